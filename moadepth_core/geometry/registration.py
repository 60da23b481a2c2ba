"""Depth registration: one camera's depth re-projected into another camera's image.

Conventions: pinhole ``K`` 3x3 float64 with fx, fy, cx, cy in pixels of *that* image and
pixel (u, v) = (column, row) whose centre sits at integer coordinates (OpenCV/ROS).
Optical frame: X right, Y down, Z forward (REP 103 ``*_optical_frame``). Depth is metres along Z;
core depth arrays use 0 for invalid (docs/ARCHITECTURE.md) and every function here also treats
NaN/Inf/negative as invalid. Points for clouds use NaN for invalid (REP 117).
"""

from __future__ import annotations

import numpy as np

from moadepth_core.errors import DataError
from moadepth_core.geometry.camera import check_intrinsics, pixel_rays


def resize_nearest(depth: np.ndarray, to_hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize by pixel centres: never blends a foreground and a background depth."""
    depth = np.asarray(depth)
    h, w = depth.shape[:2]
    th, tw = int(to_hw[0]), int(to_hw[1])
    if th <= 0 or tw <= 0:
        raise DataError(f"cannot resize depth to {tw}x{th}")
    rows = np.minimum(((np.arange(th) + 0.5) * (h / th)).astype(np.intp), h - 1)
    cols = np.minimum(((np.arange(tw) + 0.5) * (w / tw)).astype(np.intp), w - 1)
    return depth[rows[:, None], cols[None, :]]


def register_depth(
    depth_src: np.ndarray,
    K_src: np.ndarray,
    K_dst: np.ndarray,
    T_dst_src: np.ndarray,
    dst_hw: tuple[int, int],
    *,
    invalid: float = 0.0,
) -> np.ndarray:
    """Re-project a depth image into another camera (depth_image_proc/register, in numpy).

    Each valid source pixel is back-projected, moved by ``T_dst_src`` (source optical frame to
    destination optical frame), projected with ``K_dst`` to the nearest pixel, and the nearest
    surface wins where several land on one pixel (z-buffer). Unhit pixels get ``invalid``
    (0.0, the core convention). Depth is Z in the destination camera. Like depth_image_proc,
    no hole filling: upsampling leaves gaps.
    """
    depth_src = np.asarray(depth_src)
    if depth_src.ndim != 2:
        raise DataError(f"source depth must be an HxW array, got shape {depth_src.shape}")
    th, tw = int(dst_hw[0]), int(dst_hw[1])
    if th <= 0 or tw <= 0:
        raise DataError(f"destination size {tw}x{th} is empty")
    K_src, K_dst = check_intrinsics(K_src), check_intrinsics(K_dst)
    T = np.asarray(T_dst_src, dtype=np.float64)
    if T.shape != (4, 4):
        raise DataError(f"transform T_dst_src must be 4x4, got shape {T.shape}")
    h, w = depth_src.shape
    z = depth_src.astype(np.float64)
    valid = np.isfinite(z) & (z > 0)
    rays = pixel_rays(K_src, h, w)[valid].astype(np.float64)
    pts = rays * z[valid][:, None]
    pts = pts @ T[:3, :3].T + T[:3, 3]
    zd = pts[:, 2]
    front = zd > 0
    pts, zd = pts[front], zd[front]
    u = K_dst[0, 0] * pts[:, 0] / zd + K_dst[0, 1] * pts[:, 1] / zd + K_dst[0, 2]
    v = K_dst[1, 1] * pts[:, 1] / zd + K_dst[1, 2]
    ui = np.floor(u + 0.5)
    vi = np.floor(v + 0.5)
    inside = (ui >= 0) & (ui < tw) & (vi >= 0) & (vi < th)
    flat = vi[inside].astype(np.intp) * tw + ui[inside].astype(np.intp)
    zbuf = np.full(th * tw, np.inf)
    np.minimum.at(zbuf, flat, zd[inside])
    zbuf[np.isinf(zbuf)] = invalid
    return zbuf.reshape(th, tw).astype(np.float32)
