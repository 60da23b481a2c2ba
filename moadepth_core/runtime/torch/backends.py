"""Alternative inference backends for :class:`moadepth_core.runtime.torch.estimator.DepthEstimator`.

Why: on a small CPU the runtime matters as much as the network (docs/PERFORMANCE.md has the
figures). ONNX Runtime is the fast *fp32* path (the same maths up to float rounding); it has no fast
bf16 on a CPU, so it runs fp32 and ``int8`` (the same graph with its MatMul/Gemm weights quantised per
output channel, activations per call: ``runtime.int8``). torch with bf16 weights is fastest where the
CPU has AVX-512-bf16/AMX. ``torch_compile`` (Inductor with frozen, pre-packed weights) is faster
again than eager torch, at the price of a C++ compiler on the robot and tens of seconds of
compilation when the estimator is built (Inductor caches the kernels on disk).

The exported graph returns only what :meth:`DepthEstimator.predict` consumes
(``depth`` and ``uncertainty`` at the model size), at the estimator's fixed model size and a dynamic
batch axis (several cameras' frames in one run, issue 21; whether the node uses it is decided in
``runtime.onnx_session``, by measurement).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import torch
from torch import nn

from moadepth_core.errors import DeviceError
from moadepth_core.files import write_atomic
from moadepth_core.runtime import graph_cache
from moadepth_core.runtime.graph_cache import cache_hit, default_cache_dir, prune_cache
from moadepth_core.runtime.int8 import int8_graph_file, quantize_bytes, quantize_file
from moadepth_core.runtime.memory import return_free_heap
from moadepth_core.runtime.onnx_session import OUTPUTS, OnnxDepthSession, check_ort_precision
from moadepth_core.runtime.torch import onnx_writer

log = logging.getLogger("moadepth")

BACKENDS = ("torch", "torch_compile", "onnxruntime")
#: The largest batch the graph's dynamic axis admits (the node's ``max_batch`` is far below it).
BATCH_MAX = 64


class DepthOutputs(nn.Module):
    """The network with a tuple output (ONNX graphs cannot return dicts of lists)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(image)
        return out["depth"], out["uncertainty"]


def write_graph(model: nn.Module, size: tuple[int, int], f: BinaryIO, opset: int | None = None) -> None:
    """Write the ONNX graph of ``model`` (fp32, input ``image`` (N,3,H,W) in [0, 1], N dynamic) to ``f``,
    one weight at a time (:mod:`~moadepth_core.runtime.torch.onnx_writer`: no second copy of the weights in memory).

    Uses the dynamo exporter: the TorchScript one cannot export the fused
    ``_native_multi_head_attention`` that frozen CLIP blocks take in eval mode. It traces at batch 2:
    an example of batch 1 would specialise the axis to 1 (torch.export treats sizes 0 and 1 as
    constants).
    """
    model = model.eval()
    if any(p.dtype != torch.float32 for p in model.parameters()):
        raise DeviceError("the ONNX Runtime backend exports an fp32 network; convert it to fp32 first")
    x = torch.rand(2, 3, int(size[0]), int(size[1]))
    batch = torch.export.Dim("batch", min=1, max=BATCH_MAX)
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(DepthOutputs(model), (x,), input_names=["image"], output_names=list(OUTPUTS),
                                    dynamic_shapes=({0: batch},), opset_version=opset, dynamo=True,
                                    verbose=False, optimize=True)
    onnx_writer.write_model(program.model, f)


def graph_bytes(model: nn.Module, size: tuple[int, int], opset: int | None = None) -> bytes:
    """:func:`write_graph` into memory (for a graph that cannot be cached on disk)."""
    buf = io.BytesIO()
    write_graph(model, size, buf, opset)
    return buf.getvalue()


def _graph_file(cache_dir: Path, model: nn.Module, size: tuple[int, int], precision: str = "fp32") -> Path:
    """Cache key of the fp32 graph: the graph version, the size and every tensor's bytes, so changed
    weights or a changed graph never reuse a stale file. The int8 graph's key is derived from it
    (:func:`~moadepth_core.runtime.int8.int8_graph_file`)."""
    h = hashlib.sha256(f"v{graph_cache.GRAPH_VERSION} {size[0]}x{size[1]} batch:dynamic fp32".encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().float().contiguous().numpy().tobytes())
    fp32 = cache_dir / f"moadepth-{h.hexdigest()[:16]}.onnx"
    return fp32 if precision == "fp32" else int8_graph_file(fp32)


def _release(model: nn.Module) -> None:
    """Move the module's tensors to the meta device and hand their memory back to the OS."""
    model.to("meta")
    return_free_heap()


def _cached(path: Path, build: Callable[[BinaryIO], None], fallback: Callable[[], bytes]) -> Path | bytes:
    """``path`` once ``build`` wrote it there (atomically), or ``fallback()`` where it cannot be written."""
    try:
        write_atomic(path, build, fsync=False)  # a cache of hundreds of MB: not worth a flush per export
    except OSError as exc:  # a read-only home must not stop inference
        log.warning("could not cache the ONNX graph in %s: %s", path.parent, exc)
        return fallback()
    prune_cache(path.parent)
    return path


def export_graph(model: nn.Module, size: tuple[int, int], precision: str = "fp32",
                      cache_dir: str | Path | None | bool = True, *, release_model: bool = False) -> Path | bytes:
    """The graph for ``precision`` (fp32: exported; int8: the fp32 graph quantised) as its file in
    the cache, built and written there first when no earlier run left it; as bytes when there is no
    cache or it cannot be written.

    ``cache_dir``: a folder, True for :func:`default_cache_dir`, None/False: no cache.
    ``release_model``: move ``model``'s tensors to the meta device as soon as the fp32 graph exists
    (before quantising, and before the caller loads a session): the graph holds its own copy.

    Why a file: ONNX Runtime maps a graph it loads from its path, and peaks far lower than with the
    same graph handed over as bytes (docs/PERFORMANCE.md).
    """
    check_ort_precision(precision)
    size = (int(size[0]), int(size[1]))
    if cache_dir is True:
        cache_dir = default_cache_dir()
    fp32_file = _graph_file(Path(cache_dir), model, size) if cache_dir else None
    paths = {"fp32": fp32_file, "int8": int8_graph_file(fp32_file)} if fp32_file else {}
    if cache_hit(paths.get(precision)):
        if release_model:
            _release(model)
        return paths[precision]
    if cache_hit(paths.get("fp32")):
        fp32: Path | bytes = paths["fp32"]
    elif paths:
        fp32 = _cached(paths["fp32"], lambda f: write_graph(model, size, f), lambda: graph_bytes(model, size))
    else:
        fp32 = graph_bytes(model, size)
    if release_model:
        _release(model)
    if precision == "fp32":
        return fp32
    if isinstance(fp32, Path):  # (the quantiser writes the atomic write's temp file by its name)
        return _cached(paths["int8"], lambda f: quantize_file(fp32, Path(f.name)),
                       lambda: quantize_bytes(fp32.read_bytes()))
    return quantize_bytes(fp32)


class OnnxRuntimeBackend(OnnxDepthSession):
    """An ONNX Runtime CPU session made from a network, standing in for ``model(batch)`` inside
    DepthEstimator (frames go through the torch-free :meth:`OnnxDepthSession.predict`)."""

    def __init__(self, model: nn.Module, size: tuple[int, int], *, threads: int | None = None,
                 cache_dir: str | Path | None | bool = True, precision: str = "fp32",
                 release_model: bool = False) -> None:
        """``cache_dir`` as for :func:`export_graph` (with a cache, the session loads the file: less memory);
        ``precision``: fp32 or int8.

        ``release_model``: move ``model``'s tensors to the meta device once the graph is made, before
        the session loads it. ONNX Runtime holds its own copy of the weights, so the torch copy is
        dead weight (docs/PERFORMANCE.md).
        The module keeps its config and structure; running it then fails loudly.
        """
        size = (int(size[0]), int(size[1]))
        source = export_graph(model, size, precision, cache_dir, release_model=release_model)
        # (the file was just marked most recently used, so pruning by another process cannot take it)
        super().__init__(source, size, precision=precision, threads=threads)
        del source
        if release_model:
            return_free_heap()

    def __call__(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N,3,H,W) float in [0, 1] -> {"depth", "uncertainty"} (N,1,H,W) float32 tensors."""
        depth, unc = self.run(batch.detach().to("cpu", torch.float32).numpy())
        return {"depth": torch.from_numpy(depth), "uncertainty": torch.from_numpy(unc)}


class CompiledTorchBackend:
    """``torch.compile`` of the network with Inductor's weight freezing, compiled once at build time.

    Fixed batch 1 and the estimator's model size (ONNX Runtime fixes the size only), so the first frame never
    pays for compilation and no shape change can trigger a recompile mid-run.
    """

    def __init__(self, model: nn.Module, size: tuple[int, int], device: torch.device, dtype: torch.dtype) -> None:
        import shutil

        self.size = (int(size[0]), int(size[1]))
        if device.type == "cpu":
            cxx = os.environ.get("CXX") or "g++"
            if shutil.which(cxx) is None and shutil.which("c++") is None:
                raise DeviceError(f"backend torch_compile needs a C++ compiler on the CPU and found neither "
                                  f"'{cxx}' nor 'c++' (install build-essential, or use backend torch)")
        self._fn = torch.compile(DepthOutputs(model.eval()), dynamic=False)
        log.info("torch_compile: compiling the network at %dx%d (tens of seconds; cached on disk after)", *self.size)
        try:
            self(torch.zeros(1, 3, *self.size, device=device, dtype=dtype))
        except DeviceError:
            raise
        except Exception as exc:  # noqa: BLE001 - Inductor fails in many ways; the user needs one line
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise DeviceError(f"backend torch_compile could not compile the network ({type(exc).__name__}: "
                              f"{first}); use backend torch") from exc

    def __call__(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        if tuple(batch.shape) != (1, 3, *self.size):
            raise DeviceError(f"the torch_compile backend runs batch 1 at {self.size[0]}x{self.size[1]}, "
                              f"got a batch of shape {tuple(batch.shape)}")
        import torch._inductor.config as inductor_config

        # Every batch, the build-time one included, as a fresh contiguous inference tensor: a frame
        # converted from HWC has channels-last strides, and a tensor made outside inference mode
        # another dispatch key set; either failed Dynamo's guards and recompiled the graph (tens of
        # seconds) on the first real frame. The copy is one small frame.
        with inductor_config.patch(freezing=True), torch.inference_mode():
            depth, unc = self._fn(batch.clone(memory_format=torch.contiguous_format))
        return {"depth": depth, "uncertainty": unc}


def check_backend(backend: str, device: torch.device, precision: str) -> None:
    """Refuse combinations that cannot run, with one sentence that says what to use instead."""
    if backend not in BACKENDS:
        raise DeviceError(f"unknown backend '{backend}' (use {' or '.join(BACKENDS)})")
    if backend == "onnxruntime":
        if device.type != "cpu":
            raise DeviceError("backend onnxruntime runs on the CPU here; use backend torch on CUDA")
        check_ort_precision(precision)
    elif precision == "int8":
        raise DeviceError(f"precision int8 runs on backend onnxruntime only (got backend {backend}); set "
                          f"backend onnxruntime, or use precision fp32 or bf16")
