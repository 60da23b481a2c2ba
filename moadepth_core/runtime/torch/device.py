"""Which torch device a setting names: ``auto`` is a CUDA GPU when torch sees one, else the CPU."""

from __future__ import annotations

import torch

from moadepth_core.errors import DeviceError


def choose_device(device: str) -> torch.device:
    """The torch device for ``device`` (auto, cpu, cuda, cuda:N); asking for CUDA without one is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise DeviceError(f"unknown device '{device}' (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device '{device}' was requested but torch sees no CUDA GPU on this machine; "
                          f"use device auto or cpu")
    if dev.type not in ("cpu", "cuda"):
        raise DeviceError(f"device '{device}' is not supported (use auto, cpu, cuda or cuda:N)")
    return dev
