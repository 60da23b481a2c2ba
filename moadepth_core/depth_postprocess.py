"""From a network prediction to what a depth node publishes: pure numpy, no ROS.

The ROS node only adapts messages; every number it publishes is computed here so it can be
unit-tested without DDS. Conventions follow docs/ARCHITECTURE.md: ``K`` is 3x3 float64 in
pixels of the image it describes, depth is HxW float32 metres, and the published arrays use
NaN for invalid (REP 117/118).
"""

from __future__ import annotations

import cv2
import numpy as np

from moadepth_core import geometry
from moadepth_core.errors import DataError
from moadepth_core.pointcloud import PackedCloud, pack_depth

#: Relative tolerance on width/height ratios when a CameraInfo's size differs from the image's.
ASPECT_TOLERANCE = 0.01


def intrinsics_for_image(K: np.ndarray, info_hw: tuple[int, int], image_hw: tuple[int, int],
                         aspect_tolerance: float = ASPECT_TOLERANCE) -> np.ndarray:
    """K valid for an image of ``image_hw`` from a calibration made at ``info_hw``.

    Drivers publishing a binned or resized stream with the full-resolution CameraInfo are common;
    the same aspect ratio means a plain resize, which :func:`geometry.scale_intrinsics` undoes. A
    different aspect means a crop or another camera: no K can be trusted, so this raises.
    """
    ih, iw = int(info_hw[0]), int(info_hw[1])
    h, w = int(image_hw[0]), int(image_hw[1])
    if ih <= 0 or iw <= 0:
        raise DataError(f"CameraInfo size {iw}x{ih} is empty")
    if (ih, iw) == (h, w):
        return geometry._check_K(K)
    if abs((iw / ih) / (w / h) - 1.0) > aspect_tolerance:
        raise DataError(f"CameraInfo size {iw}x{ih} does not match the image size {w}x{h} "
                        f"(different aspect ratio): no points for this frame")
    return geometry.scale_intrinsics(K, (ih, iw), (h, w))


def focal_scale(K: np.ndarray, image_hw: tuple[int, int], model_hw: tuple[int, int],
                train_focal_px: float) -> float:
    """Factor turning the network's depth into this camera's metric depth.

    The network sees the image resized to ``model_hw``, where this camera's horizontal focal is
    ``fx * model_w / image_w``; the checkpoint stores the training camera's focal at that same
    size (see :func:`geometry.scale_depth_for_focal` for why the ratio is the correction).
    """
    K = geometry._check_K(K)
    f_this = K[0, 0] * model_hw[1] / image_hw[1]
    return float(geometry.scale_depth_for_focal(np.ones(1, np.float32), f_this, train_focal_px)[0])


def clip_depth(depth: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """float32 copy with NaN wherever depth is non-finite, <= 0, or outside [min_depth, max_depth]."""
    out = np.array(depth, dtype=np.float32, copy=True)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(out) | (out <= 0) | (out < min_depth) | (out > max_depth)
    out[bad] = np.nan
    return out


def confident(uncertainty: np.ndarray, max_uncertainty: float) -> np.ndarray:
    """Boolean mask of pixels whose relative uncertainty is at most ``max_uncertainty`` (NaN fails)."""
    with np.errstate(invalid="ignore"):
        return np.asarray(uncertainty) <= max_uncertainty


def depth_cloud(depth: np.ndarray, K: np.ndarray, *, uncertainty: np.ndarray | None = None,
                max_uncertainty: float = np.inf, stride: int = 1, rgb: np.ndarray | None = None) -> PackedCloud:
    """Organised, packed cloud from NaN-invalid depth and its K, decimated by ``stride``.

    Pixels over ``max_uncertainty`` become NaN points (the depth image keeps them: consumers of
    the image can apply ``depth/confidence`` themselves). ``rgb`` of another size than the depth
    is resized (output_size ``model``). Every step is vectorised: no per-point Python.
    """
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise DataError(f"depth must be HxW, got shape {depth.shape}")
    if uncertainty is not None and np.isfinite(max_uncertainty):
        if uncertainty.shape != depth.shape:
            raise DataError(f"uncertainty shape {uncertainty.shape} differs from depth {depth.shape}")
        depth = np.where(confident(uncertainty, max_uncertainty), depth, np.float32(np.nan))
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape[:2] != depth.shape:
            rgb = cv2.resize(rgb, (depth.shape[1], depth.shape[0]), interpolation=cv2.INTER_AREA)
    return pack_depth(depth, K, rgb, stride)
