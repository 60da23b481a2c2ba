"""Open a depth estimator the fastest way the settings allow: from a cached ONNX Runtime graph
without torch, else by building :class:`~moadepth_core.runtime.torch.estimator.DepthEstimator`.

Why: a CPU robot restarting its node on the same checkpoint needs nothing but the graph it exported
last time. Building the network to find that graph imports torch and open_clip and loads the weights
(docs/PERFORMANCE.md has the cost). The graph is found from the checkpoint's bytes instead (``graph_cache``); any miss (first start, another checkpoint or size,
a pruned graph, a GPU that might be there) falls back to the full build, which records the alias for
the next start. In a process that has not imported torch, that build runs in a child interpreter,
so that even a first start leaves the node without torch and at its warm-start size.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Literal

import numpy as np

from moadepth_core import errors
from moadepth_core.files import write_atomic
from moadepth_core.runtime.choice import choose_cpu_runtime
from moadepth_core.runtime.graph_cache import (
    CachedGraph,
    cache_hit,
    checkpoint_alias,
    default_cache_dir,
    prune_cache,
    read_alias,
    write_alias,
)
from moadepth_core.runtime.int8 import int8_graph_file, quantize_file
from moadepth_core.runtime.onnx_session import OnnxDepthSession
from moadepth_core.runtime.processing import DepthResult

log = logging.getLogger("moadepth")


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
        self.graph_file = entry.graph_file
        self._session = OnnxDepthSession(entry.graph_file, entry.model_size, precision=precision)

    def predict(self, rgb: np.ndarray, output_size: Literal["input", "model"] = "input") -> DepthResult:
        return self._session.predict(rgb, output_size)

    def predict_flip_averaged(self, rgb: np.ndarray) -> np.ndarray:
        return self._session.predict_flip_averaged(rgb)

    @property
    def batches(self) -> bool:
        """Whether :meth:`predict_batch` runs the frames as one ``session.run`` (see
        :attr:`OnnxDepthSession.batches`), else one after the other."""
        return self._session.batches

    def predict_batch(self, rgbs: list[np.ndarray], output_size: Literal["input", "model"] = "input"
                      ) -> list[DepthResult]:
        return self._session.predict_batch(rgbs, output_size)


def _torch_free_plan(checkpoint: str | Path | None, device: str, precision: str,
                     backend: str) -> tuple[str, Path] | None:
    """(precision, cache folder) when these settings can be served from a cached graph without torch."""
    plan = choose_cpu_runtime(device, precision, backend)
    cache = default_cache_dir()
    if not checkpoint or plan is None or plan[1] != "onnxruntime" or cache is None:
        return None
    return plan[0], cache


def find_cached_graph(checkpoint: str | Path | None, *, device: str = "auto", precision: str = "auto",
                     backend: str = "auto", input_size: tuple[int, int] | None = None,
                     pretrained: str | None = None) -> tuple[CachedGraph, str] | None:
    """(the cached graph, its precision) these settings would run, when a torch-free start can serve
    them; None otherwise (no checkpoint, not ONNX Runtime on the CPU, no cache, or a miss)."""
    plan = _torch_free_plan(checkpoint, device, precision, backend)
    if plan is None:
        return None
    try:
        alias = checkpoint_alias(plan[1], checkpoint, input_size, plan[0], pretrained)
    except OSError:  # unreadable or missing: DepthEstimator says why, in one sentence
        return None
    entry = read_alias(alias)
    return (entry, plan[0]) if entry is not None else None


def export_in_child(checkpoint: str | Path, precision: str, input_size: tuple[int, int] | None = None,
                    pretrained: str | None = None) -> bool:
    """Build the network and export its graph in a child interpreter, which records the alias; True
    when it did. For int8, a second child, without torch, quantises the fp32 graph the first left.

    Why: the build (torch, open_clip, the weights) and the quantiser each peak at more than the node
    needs to run. In a child, all of that is returned to the OS when it exits, and the node keeps only
    the ONNX Runtime session; in separate children the start peaks at the larger of the two, not their
    sum (docs/PERFORMANCE.md).
    A MoadepthError in a child is raised here with its sentence; any other failure (killed, out of
    memory) is logged and returns False, and the caller builds in this process instead.
    """
    request = {"checkpoint": str(checkpoint), "pretrained": pretrained,
               "input_size": [int(v) for v in input_size] if input_size else None}
    if find_cached_graph(checkpoint, device="cpu", precision="fp32", backend="onnxruntime", input_size=input_size,
                        pretrained=pretrained) is None and not _run_child({"job": "export", **request}):
        return False
    return precision == "fp32" or _run_child({"job": "quantize", **request})


#: The child imports the package from where this process did: ``python -m`` would look in the working
#: directory first, which may hold another copy (a source tree of another version).
_CHILD = ("import sys; sys.path.insert(0, sys.argv.pop(1)); from moadepth_core.runtime.loader import "
          "_child_main; sys.exit(_child_main(sys.argv[1:]))")


def _run_child(request: dict) -> bool:
    package_root = str(Path(__file__).resolve().parents[1])
    proc = subprocess.run([sys.executable, "-c", _CHILD, package_root, json.dumps(request)], capture_output=True,
                          text=True, check=False)
    if proc.returncode == 0:
        return True
    last = (proc.stderr.strip().splitlines() or [""])[-1]
    name, _, message = last.partition(": ")
    cls = getattr(errors, name, None)
    if proc.returncode == 2 and isinstance(cls, type) and issubclass(cls, errors.MoadepthError):
        raise cls(message)
    log.warning("the child process that %ss the graph failed (exit %s: %s); building it in this process",
                request["job"], proc.returncode, last or "no message")
    return False


def quantize_cached(checkpoint: str | Path, input_size: tuple[int, int] | None = None,
                    pretrained: str | None = None) -> CachedGraph | None:
    """The int8 graph quantised from the fp32 graph cached for ``checkpoint``, recorded under the
    checkpoint's int8 alias; None when no fp32 graph is cached for it. No torch: the fp32 alias
    already vouches for the weights (it was written after the CLIP fingerprint matched)."""
    cache = default_cache_dir()
    if cache is None:
        return None
    fp32 = read_alias(checkpoint_alias(cache, checkpoint, input_size, "fp32", pretrained))
    if fp32 is None:
        return None
    graph = int8_graph_file(fp32.graph_file)
    if not cache_hit(graph):
        write_atomic(graph, lambda f: quantize_file(fp32.graph_file, Path(f.name)), fsync=False)
        prune_cache(cache)
    entry = CachedGraph(graph, fp32.model_size, fp32.train_focal_px)
    write_alias(checkpoint_alias(cache, checkpoint, input_size, "int8", pretrained), entry)
    return entry


def load_estimator(checkpoint: str | Path | None, *, allow_untrained: bool = False, device: str = "auto",
                   precision: str = "auto", backend: str = "auto", input_size: tuple[int, int] | None = None,
                   pretrained: str | None = None):
    """A :class:`CachedGraphEstimator` when the settings run ONNX Runtime on the CPU and this
    checkpoint's graph is cached (or, in a process without torch, once a child has exported it),
    else a :class:`~moadepth_core.runtime.torch.estimator.DepthEstimator` with the same arguments (defaults here
    are the node's: ``auto`` everywhere)."""
    kw = {"device": device, "precision": precision, "backend": backend, "input_size": input_size,
          "pretrained": pretrained}
    hit = find_cached_graph(checkpoint, **kw)
    plan = _torch_free_plan(checkpoint, device, precision, backend)
    if hit is None and plan is not None and "torch" not in sys.modules and Path(checkpoint).is_file() \
            and export_in_child(checkpoint, plan[0], input_size, pretrained):
        hit = find_cached_graph(checkpoint, **kw)
    if hit is not None:
        return CachedGraphEstimator(checkpoint, *hit)
    from moadepth_core.runtime.torch.estimator import DepthEstimator

    return DepthEstimator(checkpoint, allow_untrained=allow_untrained, **kw)


def _child_main(argv: list[str]) -> int:
    """The child's entry (also ``python -m moadepth_core.runtime.loader REQUEST``), a job behind
    :func:`export_in_child`:
    ``export`` (the full build, fp32 graph) or ``quantize`` (its int8 graph, without torch)."""
    request = json.loads(argv[0])
    size = tuple(request["input_size"]) if request["input_size"] else None
    try:
        if request["job"] == "quantize":
            entry = quantize_cached(request["checkpoint"], size, request["pretrained"])
        else:
            from moadepth_core.runtime.torch.estimator import export_to_cache

            entry = export_to_cache(request["checkpoint"], precision="fp32", input_size=size,
                                pretrained=request["pretrained"])
    except errors.MoadepthError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if entry is None:
        print("the graph could not be cached for this checkpoint", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
