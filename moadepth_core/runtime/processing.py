"""What a prediction is made of on either side of the network, in numpy and OpenCV only: the
network's input (every backend's, so the resize cannot drift between them), the result (depth now,
uncertainty and confidence on demand), flip averaging and confidence itself.

Why numpy: the ONNX Runtime path runs whole frames without a torch op (any op wakes torch's OpenMP
team, whose threads then spin on ONNX Runtime's cores), and a node that starts from a cached graph
never imports torch (``runtime.loader``). The torch backends only turn :func:`prepare_input`'s array
into a tensor.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np

from moadepth_core.errors import DataError

if TYPE_CHECKING:  # torch only for the annotation: this module never imports it
    import torch


def resize_image(rgb: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """An image resized to ``size_hw`` (h, w) as training and every backend see it: area averaging when
    shrinking (no aliasing), bilinear when enlarging.

    A frame at least 4x the target on both sides is first halved by OpenCV's 2x2 mean (its fast
    exact path) while the half stays at least twice the target, so the final area step still
    averages two or more pixels per axis. Why: the generic area resize is what made a 1080p frame
    cost 3x a 480p one (docs/PERFORMANCE.md, "HD cameras"); 640x480 frames are never halved for a
    model of 224 or more.
    """
    h, w = size_hw
    if (h, w) == rgb.shape[:2]:
        return rgb
    if h * w >= rgb.shape[0] * rgb.shape[1]:
        return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
    while rgb.shape[0] // 2 >= 2 * h and rgb.shape[1] // 2 >= 2 * w:
        rgb = cv2.resize(rgb, (rgb.shape[1] // 2, rgb.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)


def resize_to_model(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The HxWx3 uint8 RGB frame checked and resized to the model ``size`` (h, w): what training does."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise DataError(f"expected an HxWx3 uint8 RGB image, got shape {rgb.shape} dtype {rgb.dtype}")
    return resize_image(rgb, size)


def prepare_input(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The network's input for one HxWx3 uint8 RGB frame: (1,3,h,w) float32 in [0, 1] at the model
    ``size`` (h, w), resized as training does. Every backend runs exactly this array."""
    x = resize_to_model(rgb, size)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None]).astype(np.float32) / np.float32(255.0)


def resize_depth(depth: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """HxW float32 depth at the frame size ``hw`` (bilinear), unchanged when it is already there."""
    if depth.shape != tuple(hw):
        depth = cv2.resize(depth, (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)
    return depth.astype(np.float32, copy=False)


def flip_average(depth: np.ndarray, depth_of_mirror: np.ndarray) -> np.ndarray:
    """The mean of a prediction and the mirrored frame's prediction mirrored back (HxW each)."""
    return np.float32(0.5) * (depth + depth_of_mirror[:, ::-1])


def confidence_from_uncertainty(rel_unc: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """0..1 confidence: 1 − relative spread, clipped (a flat distribution scores ≈ 0).

    Takes a numpy array (inference publishes it without a torch op) or a torch tensor (training).
    """
    if isinstance(rel_unc, np.ndarray):
        return np.clip(rel_unc.dtype.type(1.0) - rel_unc, 0.0, 1.0).astype(rel_unc.dtype, copy=False)
    return (1.0 - rel_unc).clamp(0.0, 1.0)


@dataclass
class DepthResult:
    """One frame's prediction, held at the network's resolution; depth, uncertainty and confidence at
    the output size are resized on first access. Why: a node writes the published depth straight
    from ``model_depth`` into its message buffer in one pass (``geometry.postprocess.publishable``),
    so a full-size intermediate would be a wasted pass over every pixel of an HD frame."""

    #: HxW float32 metres at the network's own resolution
    model_depth: np.ndarray
    #: relative spread (std / depth) at the network's own resolution
    model_uncertainty: np.ndarray
    #: (h, w) the outputs are wanted at (the input frame's); None: the network's own
    output_hw: tuple[int, int] | None = None
    #: seconds spent in preprocess / forward (to host memory) / postprocess, for diagnostics
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def hw(self) -> tuple[int, int]:
        """(h, w) of depth, uncertainty and confidence."""
        return tuple(self.output_hw) if self.output_hw is not None else self.model_depth.shape[:2]

    @functools.cached_property
    def depth(self) -> np.ndarray:
        """HxW float32 metres at the output size (bilinear from the network's)."""
        return resize_depth(self.model_depth, self.hw)

    @functools.cached_property
    def uncertainty(self) -> np.ndarray:
        """HxW float32 relative spread (std / depth), at the output size."""
        return resize_depth(self.model_uncertainty, self.hw)

    @functools.cached_property
    def confidence(self) -> np.ndarray:
        """HxW float32 in 0..1, at the output size."""
        return confidence_from_uncertainty(self.uncertainty)


def to_depth_result(depth: np.ndarray, unc: np.ndarray, input_hw: tuple[int, int],
                    output_size: Literal["input", "model"], timings: dict[str, float]) -> DepthResult:
    """The network's (h, w) depth and uncertainty as a DepthResult wanted at the input frame's size
    for ``output_size`` "input" (resized when read); ``timings`` gets the postprocess time."""
    t = time.perf_counter()
    result = DepthResult(depth.astype(np.float32, copy=False), unc.astype(np.float32, copy=False),
                         tuple(input_hw) if output_size == "input" else None, timings)
    timings["postprocess"] = time.perf_counter() - t
    return result
