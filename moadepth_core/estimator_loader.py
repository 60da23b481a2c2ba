"""Open a depth estimator the fastest way the settings allow: from a cached ONNX Runtime graph
without torch, else by building :class:`~moadepth_core.inference.DepthEstimator`.

Why: a CPU robot restarting its node on the same checkpoint needs nothing but the graph it exported
last time. Building the network to find that graph imports torch and open_clip and loads the weights
(measured on the 2-core build machine, round eight in docs/PERFORMANCE.md). The graph is found from
the checkpoint's bytes instead (``graph_cache``); any miss (first start, another checkpoint or size,
a pruned graph, a GPU that might be there) falls back to the full build, which records the alias for
the next start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from .graph_cache import CachedGraph, checkpoint_alias, default_cache_dir, read_alias
from .onnx_session import OnnxDepthSession
from .prediction import DepthResult, resize_to_model
from .runtime_choice import cpu_runtime_without_torch


class CachedGraphEstimator:
    """DepthEstimator's inference surface (``predict`` and the attributes a node reads) over a cached
    graph. It never imports torch; training, export and the raw ``forward`` need a DepthEstimator."""

    untrained = False
    backend = "onnxruntime"
    device = "cpu"

    def __init__(self, checkpoint: str | Path, entry: CachedGraph, precision: str) -> None:
        self.checkpoint_path = str(checkpoint)
        self.precision = precision
        self.model_size = entry.model_size
        self.train_focal_px = entry.train_focal_px
        self.graph_file = entry.graph
        self._session = OnnxDepthSession(entry.graph, entry.model_size, precision=precision)

    def resize_input(self, rgb: np.ndarray) -> np.ndarray:
        return resize_to_model(rgb, self.model_size)

    def predict(self, rgb: np.ndarray, output_size: Literal["input", "model"] = "input") -> DepthResult:
        return self._session.predict(rgb, output_size)


def plan_runtime(device: str, precision: str, backend: str) -> tuple[str, str, str]:
    """(device, precision, backend) with every ``auto`` decided, as DepthEstimator will resolve them;
    torch is imported only where the answer needs it (a GPU might be there)."""
    plan = cpu_runtime_without_torch(device, precision, backend)
    if plan is not None:
        return ("cpu", *plan)
    from .inference import resolve_runtime

    dev, prec, be = resolve_runtime(device, precision, backend)
    return str(dev), prec, be


def cached_graph_for(checkpoint: str | Path | None, *, device: str = "auto", precision: str = "auto",
                     backend: str = "auto", input_size: tuple[int, int] | None = None,
                     pretrained: str | None = None) -> tuple[CachedGraph, str] | None:
    """(the cached graph, its precision) these settings would run, when a torch-free start can serve
    them; None otherwise (no checkpoint, not ONNX Runtime on the CPU, no cache, or a miss)."""
    plan = cpu_runtime_without_torch(device, precision, backend)
    cache = default_cache_dir()
    if not checkpoint or plan is None or plan[1] != "onnxruntime" or cache is None:
        return None
    try:
        alias = checkpoint_alias(cache, checkpoint, input_size, plan[0], pretrained)
    except OSError:  # unreadable or missing: DepthEstimator says why, in one sentence
        return None
    entry = read_alias(alias)
    return (entry, plan[0]) if entry is not None else None


def load_estimator(checkpoint: str | Path | None, *, allow_untrained: bool = False, device: str = "auto",
                   precision: str = "auto", backend: str = "auto", input_size: tuple[int, int] | None = None,
                   pretrained: str | None = None):
    """A :class:`CachedGraphEstimator` when the settings run ONNX Runtime on the CPU and this
    checkpoint's graph is cached, else a :class:`~moadepth_core.inference.DepthEstimator` with the same
    arguments (defaults here are the node's: ``auto`` everywhere)."""
    hit = cached_graph_for(checkpoint, device=device, precision=precision, backend=backend,
                           input_size=input_size, pretrained=pretrained)
    if hit is not None:
        return CachedGraphEstimator(checkpoint, *hit)
    from .inference import DepthEstimator

    return DepthEstimator(checkpoint, allow_untrained=allow_untrained, device=device, precision=precision,
                          backend=backend, input_size=input_size, pretrained=pretrained)
