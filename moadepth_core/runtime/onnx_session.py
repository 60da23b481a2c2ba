"""An ONNX Runtime session over an exported MoA-DepthCLIP graph: frames in, DepthResult out, with
numpy and OpenCV around it and no torch at all.

Why torch-free: the CPU path runs every frame without a torch op (any torch op wakes torch's OpenMP
team, whose threads then spin on the cores ONNX Runtime uses), and a warm start from a cached graph
does not even import torch (``runtime.loader``). ``runtime.torch.backends.OnnxRuntimeBackend`` exports
the graph from a network with torch and then is one of these.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Literal

import numpy as np

from moadepth_core.errors import DeviceError
from moadepth_core.runtime.memory import return_free_heap
from moadepth_core.runtime.processing import (
    DepthResult,
    flip_average,
    prepare_input,
    resize_depth,
    to_depth_result,
)

#: What ONNX Runtime runs here: no fast bf16 on a CPU, and fp16 is CUDA-only (docs/PERFORMANCE.md).
ORT_PRECISIONS = ("fp32", "int8")
OUTPUTS = ("depth", "uncertainty")

#: Several cameras' frames waiting in one worker pass: True runs them as one ``session.run`` over the
#: graph's batch axis, False one run per frame. The one place this is decided, by measurement on the
#: 2-core AMD EPYC (AVX2) at 224x224, 2 threads: docs/PERFORMANCE.md, "Several cameras in one pass".
BATCH_IN_ONE_RUN = True


def check_ort_precision(precision: str) -> None:
    """Refuse a precision ONNX Runtime does not run here, in one sentence that says what to use."""
    if precision not in ORT_PRECISIONS:
        raise DeviceError(f"backend onnxruntime runs {' or '.join(ORT_PRECISIONS)} (got {precision}); for "
                          f"{precision} use backend torch")


def default_threads() -> int:
    """The intra-op threads torch would use: torch's own count once it is imported (it honours
    ``torch.set_num_threads``), else ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``, else one per physical
    core (torch's default, checked against torch in the tests)."""
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_num_threads"):
        return int(torch.get_num_threads())
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        try:
            n = int(os.environ.get(var, ""))
        except ValueError:
            continue
        if n > 0:
            return n
    import psutil

    return int(psutil.cpu_count(logical=False) or os.cpu_count() or 1)


class OnnxDepthSession:
    """One ONNX Runtime CPU session for a graph file (or its bytes) at a fixed ``size``, with the
    graph's batch axis (dynamic since graph version 4; a graph fixed at batch 1 still runs, frame by frame)."""

    def __init__(self, source: Path | bytes, size: tuple[int, int], *, precision: str = "fp32",
                 threads: int | None = None) -> None:
        """``source``: the graph's path (ONNX Runtime then maps it: less memory than bytes) or bytes."""
        try:
            import onnxruntime as ort
        except ImportError:  # pragma: no cover - onnxruntime is pinned in requirements.txt
            raise DeviceError("backend onnxruntime needs the onnxruntime package (pip install onnxruntime)") from None
        check_ort_precision(precision)
        self.size = (int(size[0]), int(size[1]))
        self.precision = precision
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads or default_threads())
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        # ORT's pool spins between ops (fast) and, by default, keeps spinning after a run ends: on a
        # 2-core robot CPU that starves the threads that receive the next image and publish this
        # depth. So the spin stops after each run (inside a run it stays); docs/PERFORMANCE.md.
        so.add_session_config_entry("session.force_spinning_stop", "1")
        self.session = ort.InferenceSession(str(source) if isinstance(source, Path) else source, so,
                                            providers=["CPUExecutionProvider"])
        self.graph_file = source if isinstance(source, Path) else None  # the file it loaded, if any
        graph_input = self.session.get_inputs()[0]
        self.input_name = graph_input.name
        #: whether the graph's batch axis is dynamic (else it is fixed, at 1)
        self.takes_batch = not isinstance(graph_input.shape[0], int)
        # Loading parses the whole protobuf into pieces glibc keeps once freed (docs/PERFORMANCE.md).
        return_free_heap()

    @property
    def batches(self) -> bool:
        """Whether :meth:`predict_batch` runs several frames as one ``session.run``: where the graph
        takes a batch and that is the faster arrangement here (:data:`BATCH_IN_ONE_RUN`)."""
        return self.takes_batch and BATCH_IN_ONE_RUN

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N,3,H,W) float32 in [0, 1] -> (depth, uncertainty), each (N,1,H,W) float32 (N is 1 for a
        graph fixed at batch 1)."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, *self.size) or x.shape[0] < 1 or \
                (x.shape[0] != 1 and not self.takes_batch):
            fixed = "" if self.takes_batch else "batch 1 "
            raise DeviceError(f"the ONNX Runtime backend runs {fixed}at {self.size[0]}x{self.size[1]}, "
                              f"got a batch of shape {tuple(x.shape)}")
        depth, unc = self.session.run(list(OUTPUTS), {self.input_name: np.ascontiguousarray(x, np.float32)})
        return depth, unc

    def predict(self, rgb: np.ndarray, output_size: Literal["input", "model"] = "input") -> DepthResult:
        """One HxWx3 uint8 RGB frame to metric depth, as ``DepthEstimator.predict``."""
        t0 = time.perf_counter()
        x = prepare_input(rgb, self.size)
        t1 = time.perf_counter()
        depth, unc = (a[0, 0] for a in self.run(x))
        t2 = time.perf_counter()
        return to_depth_result(depth, unc, rgb.shape[:2], output_size, {"preprocess": t1 - t0, "forward": t2 - t1})

    def predict_batch(self, rgbs: list[np.ndarray], output_size: Literal["input", "model"] = "input",
                      *, one_run: bool | None = None) -> list[DepthResult]:
        """:meth:`predict` of each frame (sizes may differ): each prepared as :meth:`predict` does, then
        all in one ``session.run`` whose outputs are split per frame, or one run per frame.

        ``one_run``: None for :attr:`batches` (the measured choice); True or False to force one
        arrangement (the bench times both). A graph fixed at batch 1 always runs frame by frame.
        In one run, each result's timings are its share of the batch's.
        """
        one_run = self.batches if one_run is None else (one_run and self.takes_batch)
        if not one_run or len(rgbs) < 2:
            return [self.predict(rgb, output_size) for rgb in rgbs]
        t0 = time.perf_counter()
        x = np.concatenate([prepare_input(rgb, self.size) for rgb in rgbs])
        t1 = time.perf_counter()
        depth, unc = self.run(x)
        n = len(rgbs)
        timings = {"preprocess": (t1 - t0) / n, "forward": (time.perf_counter() - t1) / n}
        return [to_depth_result(depth[i, 0], unc[i, 0], rgb.shape[:2], output_size, dict(timings))
                for i, rgb in enumerate(rgbs)]

    def predict_flip_averaged(self, rgb: np.ndarray) -> np.ndarray:
        """HxW float32 metres at ``rgb``'s size, averaged with the mirrored frame's prediction (one run
        each, as with a graph fixed at batch 1: the numbers evaluation has always had), as
        ``DepthEstimator.predict_flip_averaged``."""
        x = prepare_input(rgb, self.size)
        depth, mirrored = (self.run(np.ascontiguousarray(v))[0][0, 0] for v in (x, x[..., ::-1]))
        return resize_depth(flip_average(depth, mirrored), rgb.shape[:2])
