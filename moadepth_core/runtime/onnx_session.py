"""An ONNX Runtime session over an exported MoA-DepthCLIP graph: frames in, DepthResult out, with
numpy and OpenCV around it and no torch at all.

Why torch-free: the CPU path runs every frame without a torch op (any torch op wakes torch's OpenMP
team, whose threads then spin on the cores ONNX Runtime uses), and a warm start from a cached graph
does not even import torch (``estimator_loader``). ``backends.OnnxRuntimeBackend`` builds the graph
from a network with torch and then is one of these.
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
from moadepth_core.runtime.processing import DepthResult, finish, resize_to_model

ORT_PRECISIONS = ("fp32", "int8")
OUTPUTS = ("depth", "uncertainty")


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
    """One ONNX Runtime CPU session for a graph file (or its bytes) at a fixed batch 1 and ``size``."""

    def __init__(self, source: Path | bytes, size: tuple[int, int], *, precision: str = "fp32",
                 threads: int | None = None) -> None:
        """``source``: the graph's path (ONNX Runtime then maps it: less memory than bytes) or bytes."""
        try:
            import onnxruntime as ort
        except ImportError:  # pragma: no cover - onnxruntime is pinned in requirements.txt
            raise DeviceError("backend onnxruntime needs the onnxruntime package (pip install onnxruntime)") from None
        if precision not in ORT_PRECISIONS:
            raise DeviceError(f"backend onnxruntime runs {' or '.join(ORT_PRECISIONS)}, not {precision}")
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
        # depth. Stopping the spin after each run (spinning inside it stays): measured in the node at
        # 30 Hz input, 9.5-9.9 -> 11.3-12.1 Hz out, latency p50 92-98 -> 79-85 ms; a bare run the same.
        so.add_session_config_entry("session.force_spinning_stop", "1")
        self.session = ort.InferenceSession(str(source) if isinstance(source, Path) else source, so,
                                            providers=["CPUExecutionProvider"])
        self.graph_file = source if isinstance(source, Path) else None  # the file it loaded, if any
        self.input_name = self.session.get_inputs()[0].name
        # Loading parses the whole protobuf into pieces glibc keeps once freed. Measured, a session on
        # the ViT-B/32 fp32 graph alone settled at 451-658 MB from run to run, and at 437 MB after this.
        return_free_heap()

    @staticmethod
    def prepare(rgb: np.ndarray) -> np.ndarray:
        """(1,3,H,W) float32 in [0, 1] from an HxWx3 uint8 image already at the model size, bit for bit
        what ``DepthEstimator.preprocess`` makes with torch, in numpy.

        Why numpy: any torch op wakes torch's OpenMP team, whose threads then spin on the same cores
        as ONNX Runtime's pool while it runs. Measured on 2 cores with the int8 graph: torch
        preprocessing + run 67-72 ms against 49-53 ms for the numpy path (raw run 47-49 ms).
        """
        return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None]).astype(np.float32) / np.float32(255.0)

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(1,3,H,W) float32 in [0, 1] -> (depth, uncertainty), each (1,1,H,W) float32."""
        if tuple(x.shape) != (1, 3, *self.size):
            raise DeviceError(f"the ONNX Runtime backend runs batch 1 at {self.size[0]}x{self.size[1]}, "
                              f"got a batch of shape {tuple(x.shape)}")
        depth, unc = self.session.run(list(OUTPUTS), {self.input_name: np.ascontiguousarray(x, np.float32)})
        return depth, unc

    def predict(self, rgb: np.ndarray, output_size: Literal["input", "model"] = "input") -> DepthResult:
        """One HxWx3 uint8 RGB frame to metric depth, as ``DepthEstimator.predict``."""
        t0 = time.perf_counter()
        x = self.prepare(resize_to_model(rgb, self.size))
        t1 = time.perf_counter()
        depth, unc = (a[0, 0] for a in self.run(x))
        t2 = time.perf_counter()
        return finish(depth, unc, rgb.shape[:2], output_size, {"preprocess": t1 - t0, "forward": t2 - t1})
