"""DepthEstimator: an RGB array in, metric depth (and confidence) out.

Device and precision are arguments, never globals. bf16 means bf16 *weights* (``precision``); fp16
is CUDA-only. What ``auto`` means is decided in ``runtime.choice``: with backend torch on the CPU,
bf16 only where the hardware runs it natively, since elsewhere it is emulated and slower than fp32
(docs/PERFORMANCE.md). ``int8`` (backend onnxruntime only) quantises the linears: the fastest CPU
path where there is no bf16 hardware, at a small, measurable cost in accuracy.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from moadepth_core.config import ModelConfig
from moadepth_core.errors import UNTRAINED_WARNING, DataError, UntrainedError
from moadepth_core.geometry.camera import focal_at_size
from moadepth_core.model.checkpoint import load_checkpoint
from moadepth_core.model.network import MoADepthCLIP, build_model
from moadepth_core.runtime.choice import choose_runtime, cpu_has_native_bf16
from moadepth_core.runtime.graph_cache import CachedGraph, checkpoint_alias, write_alias
from moadepth_core.runtime.onnx_session import check_ort_precision
from moadepth_core.runtime.processing import (
    DepthResult,
    flip_average,
    prepare_input,
    resize_depth,
    to_depth_result,
)
from moadepth_core.runtime.torch.backends import (
    CompiledTorchBackend,
    OnnxRuntimeBackend,
    check_backend,
    export_graph,
)
from moadepth_core.runtime.torch.precision import weights_dtype

log = logging.getLogger("moadepth")

def _model_size(model: MoADepthCLIP, input_size: tuple[int, int] | None) -> tuple[int, int]:
    size = tuple(int(v) for v in (input_size or model.cfg.image_size))
    if size[0] % 32 or size[1] % 32:
        raise DataError(f"input size {size} is not a multiple of 32 in both sides")
    return size


def _focal_at(train_focal_px: float | None, model: MoADepthCLIP, model_size: tuple[int, int]) -> float | None:
    """The training focal length is stored at the training input size: it follows a resize."""
    return None if train_focal_px is None else focal_at_size(train_focal_px, model.cfg.image_size, model_size)


def _record_alias(entry: CachedGraph, checkpoint: str | Path, input_size: tuple[int, int] | None, precision: str,
                  pretrained: str | None) -> None:
    try:
        alias = checkpoint_alias(entry.graph_file.parent, checkpoint, input_size, precision, pretrained)
    except OSError as exc:  # the checkpoint went away meanwhile: only the next start is slower
        log.warning("could not fingerprint checkpoint %s for the graph cache: %s", checkpoint, exc)
        return
    write_alias(alias, entry)


class DepthEstimator:
    """Loads a checkpoint once and turns RGB frames into metric depth."""

    def __init__(self, checkpoint: str | Path | None, *, allow_untrained: bool = False, device: str = "auto",
                 precision: Literal["auto", "fp32", "bf16", "fp16", "int8"] = "fp32", input_size: tuple[int, int] | None = None,
                 model_config: ModelConfig | None = None, pretrained: str | None = None,
                 model: MoADepthCLIP | None = None,
                 backend: Literal["auto", "torch", "torch_compile", "onnxruntime"] = "torch") -> None:
        if model is None and not checkpoint and not allow_untrained:  # the one refusal every entry point meets
            raise UntrainedError("no checkpoint given: an untrained network's depth is meaningless; pass a checkpoint "
                                 "(--checkpoint CKPT), or allow_untrained (--allow-untrained) to run it anyway")
        device, self.precision, backend = choose_runtime(device, precision, backend)
        self.device = torch.device(device)
        self.dtype = weights_dtype(self.precision, self.device)
        check_backend(backend, self.device, self.precision)
        if self.precision == "bf16" and self.device.type == "cpu" and not cpu_has_native_bf16():
            log.warning("precision bf16 on this CPU (no AVX512-BF16 or AMX) is emulated and slower than fp32; "
                        "use precision auto or fp32")
        self.backend = backend
        self.checkpoint_path = str(checkpoint) if checkpoint else None
        self.train_focal_px: float | None = None
        owns_model = model is None
        data: dict = {}
        if model is not None:
            self.untrained = False
        elif checkpoint:
            model, data = load_checkpoint(checkpoint, pretrained=pretrained)
            self.train_focal_px = data.get("train_focal_px")
            self.untrained = False
        else:
            log.warning(UNTRAINED_WARNING)
            model = build_model(model_config or ModelConfig(pretrained="none"))
            self.untrained = True
        self.model = model.eval().to(self.device)
        for p in self.model.parameters():  # weights only: bin centres and normalisation stay fp32
            p.data = p.data.to(self.dtype)
        self.model_size = _model_size(model, input_size)
        self.train_focal_px = _focal_at(self.train_focal_px, model, self.model_size)
        # backend onnxruntime: the same network exported once at model_size (docs/PERFORMANCE.md).
        # backend torch_compile: Inductor, compiled here so the first frame is not the slow one.
        self._runtime = None
        if backend == "onnxruntime":
            # A model the caller passed in stays theirs; one loaded here is released to ONNX Runtime.
            self._runtime = OnnxRuntimeBackend(self.model, self.model_size, precision=self.precision,
                                               release_model=owns_model)
            if self._runtime.graph_file is not None and data.get("backbone", {}).get("fingerprint") is not None:
                # the next start finds this graph from the checkpoint's bytes, without torch
                # (runtime.loader); only for checkpoints whose CLIP weights were just verified
                self._record_alias(checkpoint, input_size, pretrained)
        elif backend == "torch_compile":
            self._runtime = CompiledTorchBackend(self.model, self.model_size, self.device, self.dtype)

    def _record_alias(self, checkpoint: str | Path, input_size: tuple[int, int] | None,
                      pretrained: str | None) -> None:
        _record_alias(CachedGraph(self._runtime.graph_file, self.model_size, self.train_focal_px), checkpoint,
                      input_size, self.precision, pretrained)

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """:func:`~moadepth_core.runtime.processing.prepare_input` as a tensor on the device, at the weights' dtype."""
        return torch.from_numpy(prepare_input(rgb, self.model_size)).to(self.device, self.dtype)

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> dict:
        """Raw network outputs for a preprocessed (B,3,H,W) batch in [0, 1] (ORT: depth/uncertainty only)."""
        if self._runtime is not None:
            return self._runtime(batch)
        return self.model(batch.to(self.device, self.dtype))

    def predict(self, rgb: np.ndarray, output_size: Literal["input", "model"] = "input") -> DepthResult:
        if isinstance(self._runtime, OnnxRuntimeBackend):  # no torch op per frame: see its prepare()
            return self._runtime.predict(rgb, output_size)
        t0 = time.perf_counter()
        batch = self.preprocess(rgb)
        t1 = time.perf_counter()
        out = self.forward(batch)
        depth = out["depth"][0, 0].float().cpu().numpy()
        unc = out["uncertainty"][0, 0].float().cpu().numpy()
        return to_depth_result(depth, unc, rgb.shape[:2], output_size,
                               {"preprocess": t1 - t0, "forward": time.perf_counter() - t1})

    @property
    def batches(self) -> bool:
        """Whether :meth:`predict_batch` runs several frames as one forward: eager torch, and ONNX
        Runtime where one run is the faster arrangement (:attr:`OnnxDepthSession.batches`); the
        compiled graph is fixed at batch 1 and runs them one after the other."""
        if isinstance(self._runtime, OnnxRuntimeBackend):
            return self._runtime.batches
        return self._runtime is None

    def predict_batch(self, rgbs: list[np.ndarray], output_size: Literal["input", "model"] = "input"
                      ) -> list[DepthResult]:
        """:meth:`predict` of each frame (sizes may differ), as one (B,3,H,W) forward where the runtime
        takes a batch (:attr:`batches`); each result's timings are its share of the batch's."""
        if isinstance(self._runtime, OnnxRuntimeBackend):  # numpy throughout, as predict
            return self._runtime.predict_batch(rgbs, output_size)
        if not self.batches or len(rgbs) < 2:
            return [self.predict(rgb, output_size) for rgb in rgbs]
        t0 = time.perf_counter()
        batch = torch.cat([self.preprocess(rgb) for rgb in rgbs])
        t1 = time.perf_counter()
        out = self.forward(batch)
        depth = out["depth"][:, 0].float().cpu().numpy()
        unc = out["uncertainty"][:, 0].float().cpu().numpy()
        n = len(rgbs)
        timings = {"preprocess": (t1 - t0) / n, "forward": (time.perf_counter() - t1) / n}
        return [to_depth_result(depth[i], unc[i], rgb.shape[:2], output_size, dict(timings))
                for i, rgb in enumerate(rgbs)]

    def predict_flip_averaged(self, rgb: np.ndarray) -> np.ndarray:
        """HxW float32 metres at ``rgb``'s size: the mean of the prediction and the mirrored frame's
        prediction mirrored back (ZoeDepth's ``infer_with_flip_aug``)."""
        if isinstance(self._runtime, OnnxRuntimeBackend):  # numpy throughout, as predict
            return self._runtime.predict_flip_averaged(rgb)
        x = self.preprocess(rgb)
        if self._runtime is None:  # eager torch: both in one batch
            d = self.forward(torch.cat([x, x.flip(-1)]))["depth"]
        else:  # the compiled graph is fixed at batch 1
            d = torch.cat([self.forward(x)["depth"], self.forward(x.flip(-1))["depth"]])
        d = d.float().cpu().numpy()
        return resize_depth(flip_average(d[0, 0], d[1, 0]), rgb.shape[:2])


def export_to_cache(checkpoint: str | Path, *, precision: str = "fp32", input_size: tuple[int, int] | None = None,
                pretrained: str | None = None) -> CachedGraph | None:
    """Export ``checkpoint``'s ONNX Runtime graph into the cache and record its alias, without
    loading a session: what a torch-free first start runs in a child (``runtime.loader``).
    None when there is no writable cache or the checkpoint has no CLIP fingerprint to trust.

    Why not a DepthEstimator: it would load the graph into ONNX Runtime only to throw it away, and
    that load was the child's peak. Here the torch weights go as soon as the fp32 graph is on disk,
    before any int8 quantisation.
    """
    check_ort_precision(precision)
    model, data = load_checkpoint(checkpoint, pretrained=pretrained)
    if data.get("backbone", {}).get("fingerprint") is None:
        return None
    train_focal_px = data.get("train_focal_px")
    del data
    size = _model_size(model, input_size)
    focal = _focal_at(train_focal_px, model, size)
    source = export_graph(model.eval(), size, precision, True, release_model=True)
    if not isinstance(source, Path):
        return None
    entry = CachedGraph(source, size, focal)
    _record_alias(entry, checkpoint, input_size, precision, pretrained)
    return entry
