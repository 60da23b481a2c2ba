"""Rigid transforms in numpy: quaternions, 4x4 matrices, composition.

``T_b_a`` is a 4x4 that maps points from frame a into frame b.
"""

from __future__ import annotations

import numpy as np

from moadepth_core.errors import DataError


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


def interpolate_transform(T_a: np.ndarray, T_b: np.ndarray, alpha: float) -> np.ndarray:
    """The rigid transform ``alpha`` of the way from ``T_a`` (0) to ``T_b`` (1), as tf2 interpolates.

    Translation is linear and rotation is spherical-linear (slerp, the shorter arc), which keeps the
    result a rigid transform; ``alpha`` outside [0, 1] is refused rather than extrapolated.
    """
    from scipy.spatial.transform import Rotation, Slerp

    alpha = float(alpha)
    if not (0.0 <= alpha <= 1.0):
        raise DataError(f"interpolation fraction {alpha} must lie in [0, 1]; transforms are never extrapolated")
    T_a, T_b = np.asarray(T_a, dtype=np.float64), np.asarray(T_b, dtype=np.float64)
    out = np.eye(4)
    out[:3, 3] = (1.0 - alpha) * T_a[:3, 3] + alpha * T_b[:3, 3]
    slerp = Slerp([0.0, 1.0], Rotation.from_matrix(np.stack([T_a[:3, :3], T_b[:3, :3]])))
    out[:3, :3] = slerp([alpha]).as_matrix()[0]
    return out
