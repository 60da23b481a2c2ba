"""Camera geometry in numpy: intrinsics, back-projection, rigid transforms, depth registration.

Conventions: pinhole ``K`` 3x3 float64 with fx, fy, cx, cy in pixels of *that* image and
pixel (u, v) = (column, row) whose centre sits at integer coordinates (OpenCV/ROS).
Optical frame: X right, Y down, Z forward (REP 103 ``*_optical_frame``). ``T_b_a`` is a 4x4
that maps points from frame a into frame b. Depth is metres along Z; core depth arrays use
0 for invalid (docs/ARCHITECTURE.md) and every function here also treats NaN/Inf/negative
as invalid. Points for clouds use NaN for invalid (REP 117).
"""

from __future__ import annotations

import functools

import numpy as np

from moadepth_core.errors import DataError


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """3x3 float64 pinhole matrix."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)


def _check_K(K: np.ndarray) -> np.ndarray:
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
    K = _check_K(K)
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
    K = _check_K(K)
    return _rays_cached(np.ascontiguousarray(K).tobytes(), int(h), int(w))


def pixel_ray_planes(K: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(x/z, y/z) of :func:`pixel_rays` as two contiguous HxW float32 planes, read-only and cached:
    the layout OpenCV's per-plane arithmetic runs at full speed on."""
    K = _check_K(K)
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
    K = _check_K(K)
    p = np.asarray(points, dtype=np.float64)
    z = p[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        zi = np.where(z > 0, 1.0 / z, np.nan)
        u = K[0, 0] * p[..., 0] * zi + K[0, 1] * p[..., 1] * zi + K[0, 2]
        v = K[1, 1] * p[..., 1] * zi + K[1, 2]
    return u, v


def transform_points(T: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a 4x4 rigid transform to (..., 3) points; keeps the input's float dtype, NaN stays NaN."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise DataError(f"transform must be a 4x4 matrix, got shape {T.shape}")
    pts = np.asarray(pts)
    if pts.shape[-1] != 3:
        raise DataError(f"points must have 3 coordinates in the last axis, got shape {pts.shape}")
    out = pts.astype(np.float64) @ T[:3, :3].T + T[:3, 3]
    return out.astype(pts.dtype if pts.dtype.kind == "f" else np.float64, copy=False)


def quaternion_to_matrix(xyzw) -> np.ndarray:
    """3x3 rotation from a quaternion in ROS order (x, y, z, w); normalised first."""
    q = np.asarray(xyzw, dtype=np.float64).reshape(4)
    n = np.linalg.norm(q)
    if not np.isfinite(n) or n < 1e-12:
        raise DataError(f"quaternion {tuple(q)} has zero or invalid norm")
    x, y, z, w = q / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def transform_matrix(translation=(0.0, 0.0, 0.0), quaternion_xyzw=(0.0, 0.0, 0.0, 1.0)) -> np.ndarray:
    """4x4 from a geometry_msgs/Transform-style translation and (x, y, z, w) rotation."""
    T = np.eye(4)
    T[:3, :3] = quaternion_to_matrix(quaternion_xyzw)
    T[:3, 3] = np.asarray(translation, dtype=np.float64).reshape(3)
    return T


def invert_transform(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 (transpose the rotation) - exact, unlike np.linalg.inv."""
    T = np.asarray(T, dtype=np.float64)
    out = np.eye(4)
    out[:3, :3] = T[:3, :3].T
    out[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return out


def compose_transforms(*transforms: np.ndarray) -> np.ndarray:
    """``compose_transforms(T_c_b, T_b_a) == T_c_a``: plain left-to-right matrix product."""
    out = np.eye(4)
    for T in transforms:
        out = out @ np.asarray(T, dtype=np.float64)
    return out


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
    K_src, K_dst = _check_K(K_src), _check_K(K_dst)
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
