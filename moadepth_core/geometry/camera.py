"""Pinhole camera maths in numpy: the camera type, intrinsics and their scaling, pixel rays,
back-projection.

Conventions: pinhole ``K`` 3x3 float64 with fx, fy, cx, cy in pixels of *that* image and
pixel (u, v) = (column, row) whose centre sits at integer coordinates (OpenCV/ROS).
Optical frame: X right, Y down, Z forward (REP 103 ``*_optical_frame``). Depth is metres along Z;
core depth arrays use 0 for invalid (docs/ARCHITECTURE.md) and every function here also treats
NaN/Inf/negative as invalid. Points for clouds use NaN for invalid (REP 117).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

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


#: Relative tolerance on width/height ratios when a calibration's size differs from the image's.
ASPECT_TOLERANCE = 0.01


def focal_at_size(focal_px: float, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> float:
    """A horizontal focal length (px) measured at ``from_hw``, in pixels of the image resized to ``to_hw``.

    The one formula for "focal length at another size", the same product :func:`scale_intrinsics`
    applies to fx, so a focal scaled here and a K scaled there agree to the bit.
    """
    return focal_px * (to_hw[1] / from_hw[1])


@dataclass(frozen=True, eq=False)
class PinholeCamera:
    """A calibrated pinhole camera: K (3x3 float64, read-only) in pixels of an image ``height`` x ``width``.

    Parsed once from a calibration (``from_K``; ROS's CameraInfo via ``moadepth_ros.messages``), as
    depth_image_proc reads CameraInfo once into a camera model; every size change goes through
    :meth:`scaled` or :meth:`focal_at`, so the half-pixel rule and the focal formula live here only.
    """

    K: np.ndarray
    height: int
    width: int

    @classmethod
    def from_K(cls, K: np.ndarray, hw: tuple[int, int]) -> PinholeCamera:
        """A camera from ``K`` and the (height, width) it describes; DataError if either is unusable."""
        K = check_intrinsics(K).copy()
        h, w = int(hw[0]), int(hw[1])
        if h <= 0 or w <= 0:
            raise DataError(f"camera image size {w}x{h} is empty")
        K.flags.writeable = False  # shared by every frame paired with this calibration
        return cls(K, h, w)

    @property
    def hw(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def focal_px(self) -> float:
        """The horizontal focal length fx in pixels: the one focal scaling compares (fy is not used)."""
        return float(self.K[0, 0])

    def focal_at(self, hw: tuple[int, int]) -> float:
        """fx in pixels of this image resized to ``hw`` (e.g. the network input): :func:`focal_at_size`."""
        return focal_at_size(self.focal_px, self.hw, hw)

    def scaled(self, hw: tuple[int, int]) -> PinholeCamera:
        """The same camera after resizing its image to ``hw`` (:func:`scale_intrinsics`, applied even
        when the size is unchanged, so every K published for a size is computed the same way)."""
        return PinholeCamera.from_K(scale_intrinsics(self.K, self.hw, hw), hw)

    def for_image(self, image_hw: tuple[int, int], aspect_tolerance: float = ASPECT_TOLERANCE) -> PinholeCamera:
        """This calibration applied to an image of ``image_hw``: itself at the same size, scaled when
        only the resolution differs, and a DataError when the aspect ratio differs.

        Drivers publishing a binned or resized stream with the full-resolution CameraInfo are common;
        the same aspect ratio means a plain resize, which :meth:`scaled` undoes. A different aspect
        means a crop or another camera: no K can be trusted.
        """
        h, w = int(image_hw[0]), int(image_hw[1])
        if (h, w) == self.hw:
            return self
        if abs((self.width / self.height) / (w / h) - 1.0) > aspect_tolerance:
            raise DataError(f"CameraInfo size {self.width}x{self.height} does not match the image size {w}x{h} "
                            f"(different aspect ratio): no points for this frame")
        return self.scaled((h, w))


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
