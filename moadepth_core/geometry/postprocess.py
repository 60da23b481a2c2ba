"""From a network prediction to what a depth node publishes: pure numpy, no ROS.

:func:`publishable` is the node's one call per frame: prediction and camera in; depth,
confidence, the point cloud and the camera at the depth's size out, written into the node's
reusable output buffers (and, when asked, the depth colourised for people). The ROS node only wraps them into messages, so every number it
publishes is computed here and unit-tested without DDS. Conventions follow
docs/ARCHITECTURE.md: ``K`` is 3x3 float64 in pixels of the image it describes, depth is HxW
float32 metres, and the published arrays use NaN for invalid (REP 117/118).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import cv2
import numpy as np

from moadepth_core import geometry
from moadepth_core.errors import DataError
from moadepth_core.geometry.camera import PinholeCamera
from moadepth_core.geometry.pointcloud import PackedCloud, depth_cloud_nbytes, pack_depth

if TYPE_CHECKING:  # the result type only: this module runs without torch
    from moadepth_core.runtime.processing import DepthResult

#: ``point_stride: auto``: the cloud's long side is about this many times the network input's long
#: side; two samples per network pixel keep every detail the network resolves (Nyquist), more only
#: repeat its bilinear upsampling (docs/ROS.md: 1 at 640x480, 3 at 1280x720, 4 at 1920x1080 for 224²)
AUTO_STRIDE_FACTOR = 2


def auto_point_stride(image_hw: tuple[int, int], model_hw: tuple[int, int] | None,
                      factor: float = AUTO_STRIDE_FACTOR) -> int:
    """The integer stride (>= 1, rounded to the nearest) that makes an ``image_hw`` cloud's long side
    about ``factor`` times the network input's (1 without a known input size)."""
    if not model_hw:
        return 1
    return max(1, int(max(image_hw) / (factor * max(model_hw)) + 0.5))


def resolve_point_stride(stride: int | str, image_hw: tuple[int, int], model_hw: tuple[int, int] | None) -> int:
    """``point_stride`` as a number: "auto" per :func:`auto_point_stride`, an integer (or its digits) as is."""
    if stride == "auto":
        return auto_point_stride(image_hw, model_hw)
    stride = int(stride)
    if stride < 1:
        raise DataError(f"point stride must be 'auto' or >= 1, got {stride}")
    return stride


def focal_scale(camera: PinholeCamera, model_hw: tuple[int, int], train_focal_px: float) -> float:
    """Factor turning the network's depth into this camera's metric depth.

    ``camera`` describes the image the network saw resized to ``model_hw``; the checkpoint stores
    the training camera's focal at that same size (see :func:`geometry.scale_depth_for_focal` for
    why the ratio is the correction).
    """
    f_this = camera.focal_at(model_hw)
    return float(geometry.scale_depth_for_focal(np.ones(1, np.float32), f_this, train_focal_px)[0])


@functools.lru_cache(maxsize=2)
def _nan_image(h: int, w: int) -> np.ndarray:
    """A read-only HxW float32 image of NaN (the source of :func:`clip_depth`'s in-place masked copy)."""
    img = np.full((h, w), np.nan, np.float32)
    img.flags.writeable = False
    return img


def clip_depth(depth: np.ndarray, min_depth: float, max_depth: float, *, out: np.ndarray | None = None
               ) -> np.ndarray:
    """float32 copy with NaN wherever depth is non-finite, <= 0, or outside [min_depth, max_depth].

    ``out``: an HxW float32 array to write into (e.g. a view of the Image message's buffer) instead
    of a new one. One OpenCV range test and a masked copy: faster than numpy's boolean passes, same
    result (tested; docs/PERFORMANCE.md).
    """
    depth = np.ascontiguousarray(depth, dtype=np.float32)
    in_place = out is depth
    if out is None:
        out = np.empty_like(depth)
    elif out.shape != depth.shape or out.dtype != np.float32:
        raise DataError(f"clip_depth's output must be a {depth.shape} float32 array, got {out.shape} {out.dtype}")
    elif not in_place and np.shares_memory(out, depth):
        depth = depth.copy()
    # both bounds rounded to float32 as numpy compares a float32 array with a Python float; the lower
    # bound is at least the smallest positive float32, so 0 and negatives always fail
    lo = max(float(np.float32(min_depth)), float(np.nextafter(np.float32(0), np.float32(1))))
    hi = min(float(np.float32(max_depth)), float(np.finfo(np.float32).max))
    keep = cv2.inRange(depth, lo, hi)  # 255 inside [lo, hi]; NaN and +-inf fail
    if in_place:  # ``out is depth``: NaN where the test failed, no second buffer; OpenCV's masked copy
        cv2.bitwise_not(keep, dst=keep)  # from a constant NaN image is ~4x faster than numpy's masked write
        cv2.copyTo(_nan_image(*out.shape), keep, out)
        return out
    out.fill(np.nan)
    cv2.copyTo(depth, keep, out)
    return out


def depth_cloud(depth: np.ndarray, K: np.ndarray, *, uncertainty: np.ndarray | None = None,
                max_uncertainty: float = np.inf, stride: int = 1, rgb: np.ndarray | None = None,
                out: object | None = None) -> PackedCloud:
    """Organised, packed cloud from NaN-invalid depth and its K, decimated by ``stride``.

    Pixels over ``max_uncertainty`` become NaN points (the depth image keeps them: consumers of
    the image can apply ``depth/confidence`` themselves). ``rgb`` of another size than the depth
    is resized (output_size ``model``). Every step is vectorised: no per-point Python. ``out``: a
    writable buffer to pack into, as for :func:`pack_depth`.
    """
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise DataError(f"depth must be HxW, got shape {depth.shape}")
    stride = int(stride)
    if stride < 1:
        raise DataError(f"point stride must be >= 1, got {stride}")
    image_hw = depth.shape
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape[:2] != depth.shape:
            rgb = cv2.resize(rgb, (depth.shape[1], depth.shape[0]), interpolation=cv2.INTER_AREA)
    # only every stride-th pixel is ever read again: mask and pack those alone
    depth = np.ascontiguousarray(depth[::stride, ::stride])
    rgb = None if rgb is None else rgb[::stride, ::stride]
    if uncertainty is not None and np.isfinite(max_uncertainty):
        if uncertainty.shape != image_hw:
            raise DataError(f"uncertainty shape {uncertainty.shape} differs from depth {image_hw}")
        # OpenCV's compare and masked copy: several times faster than np.where's branchy pass
        keep = cv2.compare(np.ascontiguousarray(uncertainty[::stride, ::stride], dtype=np.float32),
                           float(np.float32(max_uncertainty)), cv2.CMP_LE)  # NaN fails
        masked = np.full(depth.shape, np.nan, np.float32)
        cv2.copyTo(depth, keep, masked)
        depth = masked
    return pack_depth(depth, K, rgb, stride, out=out, sampled=True)


class BufferPool(Protocol):
    """Where outputs are written: one reusable writable buffer per output name (the ROS side's
    ``messages.OutputBuffers``, whose buffers messages carry without a copy)."""

    def get(self, name: str, nbytes: int) -> Any:
        """A writable bytes-like object of exactly ``nbytes`` for output ``name``."""


class _FreshBuffers:
    """A new buffer per call: for callers that keep no buffers between frames (tests, offline tools)."""

    def get(self, name: str, nbytes: int) -> bytearray:
        return bytearray(nbytes)


@dataclass(frozen=True)
class FloatImage:
    """An HxW float32 image (little-endian) and the buffer holding its bytes, as a 32FC1 message carries them."""

    array: np.ndarray
    data: Any


def _float_image(buffers: BufferPool, name: str, hw: tuple[int, int]) -> FloatImage:
    h, w = int(hw[0]), int(hw[1])
    data = buffers.get(name, h * w * 4)
    return FloatImage(np.frombuffer(data, dtype="<f4").reshape(h, w), data)


@dataclass(frozen=True)
class OutputSettings:
    """What shapes the published outputs: the node's parameters of the same names, plus the model's focal."""

    min_depth: float
    max_depth: float
    focal_scaling: bool = False
    #: the training camera's fx at the network input (``DepthEstimator.train_focal_px``); None: unknown
    train_focal_px: float | None = None
    #: the network input (height, width) that ``train_focal_px`` is measured at
    model_hw: tuple[int, int] | None = None
    publish_points: bool = True
    #: an integer >= 1, or "auto" (:func:`auto_point_stride` of the depth's size and ``model_hw``)
    point_stride: int | str = 1
    points_rgb: bool = True
    max_uncertainty: float = np.inf


class Publishable:
    """Everything a depth node publishes for one frame, from :func:`publishable`.

    Depth is ready at once; confidence and the cloud are computed on first access, so the node
    publishes depth (what costmaps wait for) before paying for them (docs/PERFORMANCE.md).
    """

    def __init__(self, depth: FloatImage, camera: PinholeCamera | None, camera_problem: str | None,
                 prediction: DepthResult, rgb: np.ndarray | None, settings: OutputSettings,
                 buffers: BufferPool) -> None:
        #: HxW float32 metres, NaN where invalid or outside [min_depth, max_depth]
        self.depth = depth
        #: intrinsics at the depth's size; None without a usable calibration (no camera_info, no points)
        self.camera = camera
        #: why the frame's calibration could not be used (one sentence), or None
        self.camera_problem = camera_problem
        self._prediction = prediction
        self._rgb = rgb
        self._settings = settings
        self._buffers = buffers

    @functools.cached_property
    def confidence(self) -> FloatImage:
        """HxW float32 in 0..1 at the depth's size: ``clip(1 - uncertainty, 0, 1)`` (the runtime's
        ``confidence_from_uncertainty``, same numbers) written straight into its buffer, two passes."""
        unc = self._prediction.uncertainty
        out = _float_image(self._buffers, "confidence", unc.shape)
        np.subtract(np.float32(1.0), unc, out=out.array)
        np.clip(out.array, np.float32(0.0), np.float32(1.0), out=out.array)
        return out

    @functools.cached_property
    def cloud(self) -> PackedCloud | None:
        """The organised cloud (``publish_points``, with a camera), else None."""
        s = self._settings
        if self.camera is None or not s.publish_points:
            return None
        h, w = self.depth.array.shape
        stride = self.point_stride
        unc = self._prediction.uncertainty if np.isfinite(s.max_uncertainty) else None
        return depth_cloud(self.depth.array, self.camera.K, uncertainty=unc,
                           max_uncertainty=s.max_uncertainty, stride=stride, rgb=self._rgb,
                           out=self._buffers.get("points", depth_cloud_nbytes(h, w, stride)))

    @functools.cached_property
    def colored(self) -> tuple[Any, np.ndarray]:
        """(buffer, HxWx3 uint8 RGB view) of the depth for people (``depth/colored``): turbo over
        [min_depth, max_depth] (near blue, far red), invalid black (:mod:`moadepth_core.evaluation.colorize`)."""
        from moadepth_core.evaluation.colorize import colorize_depth

        s = self._settings
        h, w = self.depth.array.shape
        data = self._buffers.get("colored", h * w * 3)
        view = np.frombuffer(data, dtype=np.uint8).reshape(h, w, 3)
        np.copyto(view, colorize_depth(self.depth.array, s.min_depth, s.max_depth, cmap="turbo"))
        return data, view

    @property
    def point_stride(self) -> int:
        """The cloud's stride for this frame's size (``point_stride`` "auto" resolved)."""
        return resolve_point_stride(self._settings.point_stride, self.depth.array.shape, self._settings.model_hw)


def publishable(prediction: DepthResult, rgb: np.ndarray, camera: PinholeCamera | None,
                settings: OutputSettings, buffers: BufferPool | None = None) -> Publishable:
    """What to publish for one frame: ``prediction`` for the HxWx3 ``rgb`` frame, seen by ``camera``
    (its calibration, at the CameraInfo's size; None when there is none).

    The calibration is fitted to the frame (:meth:`PinholeCamera.for_image`); if that fails the
    depth still goes out, unscaled and without camera or cloud, and ``camera_problem`` says why.
    With a camera, ``focal_scaling`` rescales depth by its focal against the training camera's
    at the network input, and ``camera`` of the result is the calibration at the depth's size.
    Outputs are written into ``buffers`` ("depth", "confidence", "points", "colored").
    """
    buffers = _FreshBuffers() if buffers is None else buffers
    image_camera, problem = None, None
    if camera is not None:
        try:
            image_camera = camera.for_image(rgb.shape[:2])
        except DataError as exc:
            problem = str(exc)
    hw = prediction.hw
    out = _float_image(buffers, "depth", hw)
    model = prediction.model_depth
    # focal scaling and the range test at the network's resolution, then one pass over the output's
    # pixels: the bilinear resize written straight into the message's buffer (docs/PERFORMANCE.md).
    # A pixel is NaN wherever a model pixel its interpolation reads is invalid: a depth blended
    # with one outside [min_depth, max_depth] would be a flying pixel, not a measurement.
    same_size = tuple(model.shape) == tuple(hw)
    small = out.array if same_size else np.empty_like(model, dtype=np.float32)
    if settings.focal_scaling and image_camera is not None and settings.train_focal_px:
        np.multiply(model, np.float32(focal_scale(image_camera, settings.model_hw, settings.train_focal_px)),
                    out=small)
    else:
        np.copyto(small, model)
    clip_depth(small, settings.min_depth, settings.max_depth, out=small)
    if not same_size:
        resized = cv2.resize(small, (hw[1], hw[0]), dst=out.array, interpolation=cv2.INTER_LINEAR)
        if not np.shares_memory(resized, out.array):  # OpenCV allocated instead of writing in place
            np.copyto(out.array, resized)
    depth = out.array
    # scaled from the calibration itself, not from the frame's camera: one rounding, as the K
    # of depth/camera_info has always been computed
    depth_camera = camera.scaled(depth.shape) if image_camera is not None else None
    return Publishable(out, depth_camera, problem, prediction, rgb if settings.points_rgb else None, settings,
                       buffers)
