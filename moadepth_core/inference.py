"""DepthEstimator: an RGB array in, metric depth (and confidence) out.

Device and precision are arguments, never globals. bf16 on CPU means bf16
*weights* (measured faster than autocast); fp16 is CUDA-only. Precision ``auto``
picks bf16 only where the hardware runs it natively: on a CPU without
AVX512-BF16 or AMX, oneDNN emulates bf16 and the forward is about twice as slow
as fp32 (docs/PERFORMANCE.md, round four). ``int8`` (backend onnxruntime only)
quantises the linears' weights and activations: the fastest CPU path where there
is no bf16 hardware, at a small, measurable cost in accuracy.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch

from .backends import CompiledTorchBackend, OnnxRuntimeBackend, check_backend
from .checkpoint import load_checkpoint
from .config import ModelConfig
from .errors import DataError, DeviceError, UntrainedError
from .head import confidence_from_uncertainty
from .network import MoADepthCLIP, build_model

log = logging.getLogger("moadepth")

UNTRAINED_WARNING = ("RUNNING AN UNTRAINED NETWORK: its depth is meaningless and must never feed a costmap; "
                     "pass a trained checkpoint for real use")

#: torch dtype of the weights and input per precision; int8 lives inside the ONNX Runtime graph,
#: so torch keeps fp32 around it.
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.float32}


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is a clear error."""
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


def cpu_has_native_bf16() -> bool:
    """True where the CPU multiplies bf16 in hardware (AVX512-BF16 or AMX-BF16)."""
    try:
        caps = torch.cpu.get_capabilities()
    except (AttributeError, RuntimeError):  # older torch, or a CPU it cannot query
        return False
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


def choose_precision(precision: str, device: torch.device, backend: str = "torch") -> str:
    """The concrete precision for ``auto`` (others pass through): the fastest this hardware runs natively.

    CUDA: bf16 where the GPU supports it, else fp16. CPU: bf16 with AVX512-BF16/AMX, else fp32.
    Backend onnxruntime: fp32; its int8 is never chosen for you, since it changes the depth a little.
    """
    if precision != "auto":
        return precision
    if backend == "onnxruntime":
        return "fp32"
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def choose_backend(backend: str, device: torch.device, precision: str) -> str:
    """The concrete backend for ``auto`` (others pass through), given the concrete precision.

    ONNX Runtime for fp32 and int8 on the CPU: at fp32 it computes torch's numbers (parity 1e-4,
    tested) 1.3-2x faster on both build CPUs (docs/PERFORMANCE.md). torch for bf16/fp16 and CUDA.
    ``torch_compile`` is never automatic: it needs a C++ compiler and compiles for tens of seconds.
    """
    if backend != "auto":
        return backend
    return "onnxruntime" if device.type == "cpu" and precision in ("fp32", "int8") else "torch"


def resolve_runtime(device: str, precision: str, backend: str) -> tuple[torch.device, str, str]:
    """(device, precision, backend) with every ``auto`` decided: what DepthEstimator will run.

    Precision first (from the hardware), then the backend from the precision: precision auto with
    backend auto is bf16 + torch on bf16 hardware and fp32 + onnxruntime on other CPUs.
    """
    dev = resolve_device(device)
    prec = choose_precision(precision, dev, "torch" if backend == "auto" else backend)
    return dev, prec, choose_backend(backend, dev, prec)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    if precision not in _DTYPES:
        raise DeviceError(f"unknown precision '{precision}' (use auto, fp32, bf16, fp16 or int8)")
    if precision == "fp16" and device.type != "cuda":
        raise DeviceError("precision fp16 needs a CUDA device; on CPU use bf16 or fp32")
    return _DTYPES[precision]


@dataclass
class DepthResult:
    """One frame's prediction. Depth is ready at once; uncertainty and confidence are resized to the
    output size on first access, so a node can publish depth before paying for them."""

    depth: np.ndarray  # HxW float32 metres
    #: relative spread (std / depth) at the network's own resolution
    model_uncertainty: np.ndarray
    #: seconds spent in preprocess / forward (to host memory) / postprocess, for diagnostics
    timings: dict[str, float] = field(default_factory=dict)

    @functools.cached_property
    def uncertainty(self) -> np.ndarray:
        """HxW float32 relative spread (std / depth), at the depth's size."""
        unc = self.model_uncertainty
        if unc.shape != self.depth.shape:
            unc = cv2.resize(unc, (self.depth.shape[1], self.depth.shape[0]), interpolation=cv2.INTER_LINEAR)
        return unc.astype(np.float32, copy=False)

    @functools.cached_property
    def confidence(self) -> np.ndarray:
        """HxW float32 in 0..1, at the depth's size."""
        return confidence_from_uncertainty(self.uncertainty)


class DepthEstimator:
    """Loads a checkpoint once and turns RGB frames into metric depth."""

    def __init__(self, checkpoint: str | Path | None, *, allow_untrained: bool = False, device: str = "auto",
                 precision: Literal["auto", "fp32", "bf16", "fp16", "int8"] = "fp32", input_size: tuple[int, int] | None = None,
                 model_config: ModelConfig | None = None, pretrained: str | None = None,
                 model: MoADepthCLIP | None = None,
                 backend: Literal["auto", "torch", "torch_compile", "onnxruntime"] = "torch") -> None:
        self.device, self.precision, backend = resolve_runtime(device, precision, backend)
        self.dtype = resolve_precision(self.precision, self.device)
        check_backend(backend, self.device, self.precision)
        if self.precision == "bf16" and self.device.type == "cpu" and not cpu_has_native_bf16():
            log.warning("precision bf16 on this CPU (no AVX512-BF16 or AMX) is emulated and slower than fp32; "
                        "use precision auto or fp32")
        self.backend = backend
        self.checkpoint_path = str(checkpoint) if checkpoint else None
        self.train_focal_px: float | None = None
        owns_model = model is None
        if model is not None:
            self.untrained = False
        elif checkpoint:
            model, data = load_checkpoint(checkpoint, pretrained=pretrained)
            self.train_focal_px = data.get("train_focal_px")
            self.untrained = False
        else:
            if not allow_untrained:
                raise UntrainedError("no checkpoint given: an untrained network's depth is meaningless; pass a "
                                     "checkpoint, or allow_untrained (--allow-untrained) to run it anyway")
            log.warning(UNTRAINED_WARNING)
            model = build_model(model_config or ModelConfig(pretrained="none"))
            self.untrained = True
        self.model = model.eval().to(self.device)
        for p in self.model.parameters():  # weights only: bin centres and normalisation stay fp32
            p.data = p.data.to(self.dtype)
        self.model_size = tuple(input_size or model.cfg.image_size)
        if self.model_size[0] % 32 or self.model_size[1] % 32:
            raise DataError(f"input size {self.model_size} is not a multiple of 32 in both sides")
        if self.train_focal_px is not None and input_size is not None:
            # The training focal is stored at the training input size: follow the resize.
            self.train_focal_px *= self.model_size[1] / model.cfg.image_size[1]
        # backend onnxruntime: same network exported once at model_size (docs/PERFORMANCE.md).
        # backend torch_compile: Inductor, compiled here so the first frame is not the slow one.
        self._runtime = None
        if backend == "onnxruntime":
            # A model the caller passed in stays theirs; one loaded here is released to ONNX Runtime.
            self._runtime = OnnxRuntimeBackend(self.model, self.model_size, precision=self.precision,
                                               release_model=owns_model)
        elif backend == "torch_compile":
            self._runtime = CompiledTorchBackend(self.model, self.model_size, self.device, self.dtype)

    def resize_input(self, rgb: np.ndarray) -> np.ndarray:
        """The HxWx3 uint8 RGB frame checked and resized to the model size (what training does)."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise DataError(f"expected an HxWx3 uint8 RGB image, got shape {rgb.shape} dtype {rgb.dtype}")
        h, w = self.model_size
        if rgb.shape[:2] != (h, w):
            interp = cv2.INTER_AREA if rgb.shape[0] > h else cv2.INTER_LINEAR
            rgb = cv2.resize(rgb, (w, h), interpolation=interp)
        return rgb

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(self.resize_input(rgb))).permute(2, 0, 1).unsqueeze(0)
        return x.to(self.device).to(self.dtype).div_(255.0)

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> dict:
        """Raw network outputs for a preprocessed (B,3,H,W) batch in [0, 1] (ORT: depth/uncertainty only)."""
        if self._runtime is not None:
            return self._runtime(batch)
        return self.model(batch.to(self.device, self.dtype))

    def predict(self, rgb: np.ndarray, output_size: Literal["input", "model"] = "input") -> DepthResult:
        t0 = time.perf_counter()
        if isinstance(self._runtime, OnnxRuntimeBackend):  # no torch op per frame: see its prepare()
            x = self._runtime.prepare(self.resize_input(rgb))
            t1 = time.perf_counter()
            depth, unc = (a[0, 0] for a in self._runtime.run(x))
        else:
            batch = self.preprocess(rgb)
            t1 = time.perf_counter()
            out = self.forward(batch)
            depth = out["depth"][0, 0].float().cpu().numpy()
            unc = out["uncertainty"][0, 0].float().cpu().numpy()
        t2 = time.perf_counter()
        if output_size == "input" and depth.shape != rgb.shape[:2]:
            depth = cv2.resize(depth, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
        timings = {"preprocess": t1 - t0, "forward": t2 - t1, "postprocess": time.perf_counter() - t2}
        return DepthResult(depth.astype(np.float32, copy=False), unc.astype(np.float32, copy=False), timings)
