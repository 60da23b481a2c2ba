"""Precision names to torch dtypes, for inference and for training: the one place that knows them.

Inference casts the weights and input (bf16 weights on a CPU run faster than autocast there:
docs/PERFORMANCE.md); training autocasts. Either way fp16 needs CUDA.
"""

from __future__ import annotations

import torch

from moadepth_core.errors import DeviceError

#: int8 lives inside the ONNX Runtime graph, so torch keeps fp32 around it.
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.float32}


def weights_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype inference casts the weights and input to, for a concrete (not ``auto``) precision."""
    if precision not in _DTYPES:
        raise DeviceError(f"unknown precision '{precision}' (use auto, fp32, bf16, fp16 or int8)")
    if precision == "fp16" and device.type != "cuda":
        raise DeviceError("precision fp16 needs a CUDA device; on CPU use bf16 or fp32")
    return _DTYPES[precision]


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The dtype training autocasts to; None is plain fp32. ``auto`` is bf16 on CUDA (no loss
    scaling needed) and fp32 on the CPU."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if precision == "int8":
        raise DeviceError("precision int8 is for inference on ONNX Runtime; train in fp32, bf16 or fp16")
    dtype = weights_dtype(precision, device)
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError("precision bf16 is not supported by this GPU; use fp16 or fp32")
    return None if dtype == torch.float32 else dtype
