"""Checkpoints: the trained tensors, the model config, the context vector, the training camera's
focal length and where the frozen CLIP weights came from.

The frozen tower (~59 M parameters) is not stored: it is rebuilt from its
source (hub tag, weights file, or a seeded random init) and checked against a
fingerprint, so a checkpoint is ~120 MB instead of ~360 MB and can never be
silently paired with other CLIP weights. Writes are atomic (temp file, fsync,
rename): a run killed mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import math
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from moadepth_core import __version__
from moadepth_core.config import ModelConfig, from_dict, to_dict
from moadepth_core.errors import CheckpointError, ConfigError
from moadepth_core.files import write_atomic
from moadepth_core.model.network import MoADepthCLIP, build_model

FORMAT = "moadepth-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, model: MoADepthCLIP, *, train_focal_px: float | None = None,
                    step: int = 0, metrics: dict | None = None, training_state: dict | None = None,
                    extra: dict | None = None) -> None:
    model = getattr(model, "module", model)  # unwrap DDP
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "moadepth_version": __version__,
        "model_config": to_dict(model.cfg),
        "state": {k: v.detach().cpu() for k, v in model.trainable_state_dict().items()},
        "backbone": {**model.source.as_dict(), "fingerprint": model.fingerprint},
        "train_focal_px": train_focal_px,
        "step": step,
        "metrics": metrics or {},
        "training_state": training_state,
        **(extra or {}),
    }
    write_atomic(path, lambda f: torch.save(payload, f))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and validate the checkpoint dict (no model built)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a checkpoint file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: the file is truncated or corrupt ({reason})") \
            from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a moadepth checkpoint (no '{FORMAT}' marker)")
    if data.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {data['format_version']}, newer than this "
                              f"moadepth understands ({FORMAT_VERSION}); upgrade moadepth")
    return data


def model_config_of(data: dict, path: str | Path = "checkpoint") -> ModelConfig:
    try:
        return from_dict(ModelConfig, data["model_config"], source=f"{path} (model_config)")
    except (ConfigError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {path} was written for another architecture: {exc}") from None


def load_checkpoint(path: str | Path, *, pretrained: str | None = None,
                    data: dict | None = None) -> tuple[MoADepthCLIP, dict[str, Any]]:
    """Rebuild the network from a checkpoint; returns (model in eval mode, checkpoint dict).

    ``pretrained`` overrides where the frozen CLIP weights are read from (the file moved).
    """
    data = read_checkpoint(path) if data is None else data
    cfg = model_config_of(data, path)
    src = data.get("backbone", {})
    source = pretrained or src.get("pretrained", cfg.pretrained)
    if source != "none" and pretrained is None and not Path(source).exists() and os.sep in source:
        raise CheckpointError(f"checkpoint {path} needs the CLIP weights file {source}, which does not exist; "
                              f"pass its new location with --pretrained PATH")
    context = data["state"].get("context")
    model = build_model(cfg, context=context, pretrained=source)
    state = data["state"]
    expected = model.trainable_state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape]
    if missing or unexpected or mismatched:
        what = (f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}" if unexpected
                else f"shape mismatch in {mismatched[:3]}")
        raise CheckpointError(f"checkpoint {path} does not fit the {cfg.backbone} MoA-DepthCLIP architecture "
                              f"({what})")
    model.load_state_dict(state, strict=False)
    want = src.get("fingerprint")
    if want is not None and not math.isclose(want, model.fingerprint, rel_tol=1e-6):
        raise CheckpointError(f"checkpoint {path} was trained on other frozen CLIP weights than those loaded "
                              f"from '{source}' (fingerprint {model.fingerprint:.6g} != {want:.6g})")
    model.eval()
    return model, data
