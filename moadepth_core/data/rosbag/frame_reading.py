"""One frame of a bag, from message to arrays: decoding colour and REP 118 depth (raw or image_transport's
compressed/compressedDepth) and putting the depth into the image camera (as is, resized, or registered
through both CameraInfos and the static transform between the two frames).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moadepth_core import geometry
from moadepth_core.data.rosbag.tf_buffer import TfBuffer
from moadepth_core.errors import DataError
from moadepth_core.geometry import compressed
from moadepth_core.geometry import image_buffers as imaging

_SAME_K_ATOL_PX = 0.25  # intrinsics closer than this (after scaling) are "the same camera"


def _message_error(path: Path, m, what: str, exc: DataError) -> DataError:
    return DataError(f"bag {path}: {what} message stamped {m.header.stamp.sec}.{m.header.stamp.nanosec:09d}: "
                     f"{exc}")


def _decode(path: Path, m, what: str) -> np.ndarray:
    try:
        return imaging.decode_image(m.encoding, m.height, m.width, m.step, m.data, m.is_bigendian)
    except DataError as exc:
        raise _message_error(path, m, what, exc) from None


def decode_rgb(path: Path, m) -> np.ndarray:
    """HxWx3 uint8 RGB of an Image or a CompressedImage (image_transport's compressed plugin)."""
    if hasattr(m, "format"):
        try:
            return compressed.decode_rgb8(m.format, m.data)
        except DataError as exc:
            raise _message_error(path, m, "image", exc) from None
    rgb = imaging.to_rgb8(_decode(path, m, "image"), m.encoding)
    return rgb if rgb.flags.writeable else rgb.copy()  # a view of the message buffer: own the pixels


def decode_metres(path: Path, m, what: str, depth_scale: float | None) -> np.ndarray:
    """Depth in metres (invalid 0) of an Image or a compressedDepth CompressedImage."""
    if hasattr(m, "format"):
        try:
            array, encoding = compressed.decode_depth(m.format, m.data)
        except DataError as exc:
            raise _message_error(path, m, what, exc) from None
        return imaging.depth_to_metres(array, encoding, depth_scale)
    return imaging.depth_to_metres(_decode(path, m, what), m.encoding, depth_scale)


class DepthIntoImageCamera:
    """Puts a depth image into the image camera; ``modes`` collects how ("same", "resize", "register").

    The decision for one pair of cameras (frames, intrinsics, sizes) is made once and cached.
    """

    def __init__(self, path: Path, tf: TfBuffer) -> None:
        self.path = path
        self.tf = tf
        self.modes: set[str] = set()
        self._cache: dict[tuple, tuple[str, np.ndarray | None]] = {}

    def __call__(self, depth: np.ndarray, img_frame: str, K: np.ndarray, hw: tuple[int, int], d_frame: str,
                 dinfo) -> np.ndarray:
        """``depth`` (in frame ``d_frame``, with CameraInfo ``dinfo`` or None) at the image camera
        (frame ``img_frame``, intrinsics ``K``, size ``hw``)."""
        dhw = depth.shape[:2]
        same_frame = not d_frame or not img_frame or d_frame.lstrip("/") == img_frame.lstrip("/")
        if dinfo is None:
            if not same_frame:
                raise DataError(
                    f"bag {self.path}: depth is in frame {d_frame!r} and the image in {img_frame!r}, but there is "
                    "no depth CameraInfo to register it (pass --depth-camera-info-topic)")
            self.modes.add("same" if dhw == hw else "resize")
            return depth if dhw == hw else geometry.resize_nearest(depth, hw)
        K_d = dinfo.K if dinfo.hw == dhw else geometry.scale_intrinsics(dinfo.K, dinfo.hw, dhw)
        key = (img_frame, d_frame, K.tobytes(), hw, K_d.tobytes(), dhw)
        if key not in self._cache:
            same_k = np.abs(geometry.scale_intrinsics(K_d, dhw, hw) - K).max() < _SAME_K_ATOL_PX
            if same_frame and same_k:
                self._cache[key] = ("same", None)
            elif same_frame:
                self._cache[key] = ("register", np.eye(4))
            else:
                try:
                    T = self.tf.lookup(img_frame, d_frame)
                except DataError as exc:
                    raise DataError(f"bag {self.path}: cannot register depth into the image camera: {exc}") \
                        from None
                self._cache[key] = ("register", T)
        mode, T = self._cache[key]
        if mode == "same":
            if dhw == hw:
                self.modes.add("same")
                return depth
            self.modes.add("resize")
            return geometry.resize_nearest(depth, hw)
        self.modes.add("register")
        return geometry.register_depth(depth, K_d, K, T, hw)
