"""Helpers every stage shares: timing, the test frame, random models and checkpoints."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

FRAME_HW = (480, 640)
SIZES = {"224x224": (224, 224), "192x256": (192, 256)}  # square, and 4:3 like the camera


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timed(fn: Callable[[], object], repeat: int, warmup: int = 2, sync: Callable[[], None] | None = None,
          budget_s: float | None = None) -> float:
    """Median milliseconds of ``fn`` over ``repeat`` runs after ``warmup`` (stops early past budget_s)."""
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    times = []
    start = time.perf_counter()
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append((time.perf_counter() - t) * 1e3)
        if budget_s is not None and time.perf_counter() - start > budget_s and len(times) >= 3:
            break
    return statistics.median(times)


def pct(values: list[float], q: float) -> float:
    """numpy's percentile (its default, linear method, as ``bag_replay`` and the node's diagnostics
    use); NaN for no values, so an empty run still writes its key."""
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def build_random_model(size: tuple[int, int]):
    from moadepth_core.config import ModelConfig
    from moadepth_core.model.network import build_model

    torch.manual_seed(0)
    return build_model(ModelConfig(pretrained="none", image_size=list(size))).eval()


def test_frame(hw: tuple[int, int] = FRAME_HW) -> np.ndarray:
    """An RGB frame (640x480 unless told) with structure (gradients + noise), not a constant."""
    h, w = hw
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 255 // (w + h)], axis=-1)
    return np.clip(base + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def make_checkpoint(tmp: Path, size: tuple[int, int] = (224, 224)) -> Path:
    from moadepth_core.model.checkpoint import save_checkpoint

    path = tmp / "bench-random.pt"
    save_checkpoint(path, build_random_model(size))
    return path


def make_weights_file_checkpoint(tmp: Path) -> Path:
    """A checkpoint over a CLIP weights file, the product's own path (hub weights load the same way
    from the hub cache): random weights written to ``tmp`` (a CLIP-sized file; docs/PERFORMANCE.md),
    since none can be downloaded here."""
    import open_clip

    from moadepth_core.config import ModelConfig
    from moadepth_core.model.checkpoint import save_checkpoint
    from moadepth_core.model.network import build_model

    weights, path = tmp / "clip-vit-b-32.pt", tmp / "bench-weights-file.pt"
    torch.manual_seed(0)
    clip = open_clip.create_model("ViT-B-32", pretrained=None, force_quick_gelu=True)
    torch.save(clip.state_dict(), weights)
    del clip
    save_checkpoint(path, build_model(ModelConfig(pretrained=str(weights))))
    return path
