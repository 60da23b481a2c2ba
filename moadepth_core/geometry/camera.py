"""Pinhole camera maths in numpy: intrinsics, their scaling, pixel rays, back-projection.

Conventions: pinhole ``K`` 3x3 float64 with fx, fy, cx, cy in pixels of *that* image and
pixel (u, v) = (column, row) whose centre sits at integer coordinates (OpenCV/ROS).
Optical frame: X right, Y down, Z forward (REP 103 ``*_optical_frame``). Depth is metres along Z;
core depth arrays use 0 for invalid (docs/ARCHITECTURE.md) and every function here also treats
NaN/Inf/negative as invalid. Points for clouds use NaN for invalid (REP 117).
"""

from __future__ import annotations

import functools

import numpy as np

from moadepth_core.errors import DataError


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """3x3 float64 pinhole matrix."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)


def check_intrinsics(K: np.ndarray) -> np.ndarray:
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise DataError(f"camera matrix K must be 3x3, got shape {K.shape}")
    if not (np.isfinite(K).all() and K[0, 0] > 0 and K[1, 1] > 0):
        raise DataError(f"camera matrix K has invalid focal lengths fx={K[0, 0]}, fy={K[1, 1]}")
    return K


def scale_intrinsics(K: np.ndarray, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> np.ndarray:
    """K for the same camera after resizing the image from ``from_hw`` to ``to_hw``.

    Pixel centres are at integers, so the image edge is at -0.5: ``cx' = (cx + 0.5) * sx - 0.5``.
    Scaling cx alone would shift the principal point by half a pixel per factor of two.
    """
    K = check_intrinsics(K)
    sy = to_hw[0] / from_hw[0]
    sx = to_hw[1] / from_hw[1]
    out = K.copy()
    out[0, 0] *= sx
    out[0, 1] *= sx
    out[1, 1] *= sy
    out[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    out[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return out


@functools.lru_cache(maxsize=16)
def _rays_cached(k_bytes: bytes, h: int, w: int) -> np.ndarray:
    K = np.frombuffer(k_bytes, dtype=np.float64).reshape(3, 3)
    fx, fy, cx, cy, skew = K[0, 0], K[1, 1], K[0, 2], K[1, 2], K[0, 1]
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    y = (v - cy) / fy
    x = (u - cx - skew * y) / fx
    rays = np.stack([x, y, np.ones_like(x)], axis=-1).astype(np.float32)
    rays.flags.writeable = False  # shared between callers
    return rays


def pixel_rays(K: np.ndarray, h: int, w: int) -> np.ndarray:
    """HxWx3 float32 rays (x/z, y/z, 1) through each pixel centre, read-only and cached.

    The node calls this every frame with the same K, so the grid is built once per (K, size).
    """
    K = check_intrinsics(K)
    return _rays_cached(np.ascontiguousarray(K).tobytes(), int(h), int(w))


def pixel_ray_planes(K: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(x/z, y/z) of :func:`pixel_rays` as two contiguous HxW float32 planes, read-only and cached:
    the layout OpenCV's per-plane arithmetic runs at full speed on."""
    K = check_intrinsics(K)
    return _ray_planes_cached(np.ascontiguousarray(K).tobytes(), int(h), int(w))


@functools.lru_cache(maxsize=16)
def _ray_planes_cached(k_bytes: bytes, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    rays = _rays_cached(k_bytes, h, w)
    planes = tuple(np.ascontiguousarray(rays[..., i]) for i in (0, 1))
    for p in planes:
        p.flags.writeable = False
    return planes


def backproject(depth: np.ndarray, K: np.ndarray, stride: int = 1) -> np.ndarray:
    """Organised HxWx3 float32 points (X, Y, Z) in the camera optical frame; invalid depth -> NaN.

    ``stride`` keeps every stride-th pixel in both directions (using those pixels' own u, v),
    giving a ceil(H/stride) x ceil(W/stride) cloud: cheaper to publish and for costmaps.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise DataError(f"depth must be an HxW array, got shape {depth.shape}")
    stride = int(stride)
    if stride < 1:
        raise DataError(f"point stride must be >= 1, got {stride}")
    h, w = depth.shape
    rays = pixel_rays(K, h, w)
    if stride > 1:
        depth = depth[::stride, ::stride]
        rays = rays[::stride, ::stride]
    z = depth.astype(np.float32, copy=False)
    pts = rays * z[..., None]
    pts[~(np.isfinite(z) & (z > 0))] = np.nan
    return pts


def project_points(points: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (u, v) of camera-frame points (..., 3); points with Z <= 0 give NaN."""
    K = check_intrinsics(K)
    p = np.asarray(points, dtype=np.float64)
    z = p[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        zi = np.where(z > 0, 1.0 / z, np.nan)
        u = K[0, 0] * p[..., 0] * zi + K[0, 1] * p[..., 1] * zi + K[0, 2]
        v = K[1, 1] * p[..., 1] * zi + K[1, 2]
    return u, v


def scale_depth_for_focal(depth: np.ndarray, focal_this_px: float, focal_train_px: float) -> np.ndarray:
    """Rescale metric depth predicted for a camera with another focal length.

    A monocular network infers depth from apparent size: an object of size S at depth Z spans
    f*S/Z pixels, so what it learned is Z = f_train*S/pixels. The same pixel extent seen by a
    camera with f_this means Z = f_this*S/pixels, i.e. ``depth * f_this / f_train``. Both focal
    lengths must be in pixels at the network input size (scale each camera's K to that size
    first). Invalid values (0, NaN) stay invalid.
    """
    f_this, f_train = float(focal_this_px), float(focal_train_px)
    if not (np.isfinite(f_this) and np.isfinite(f_train) and f_this > 0 and f_train > 0):
        raise DataError(f"focal lengths must be positive pixels, got {f_this} and {f_train}")
    return (np.asarray(depth, dtype=np.float32) * np.float32(f_this / f_train)).astype(np.float32)
