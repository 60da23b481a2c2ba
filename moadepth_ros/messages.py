"""sensor_msgs <-> numpy adapters: field copying only; the maths lives in moadepth_core.

Replaces cv_bridge / sensor_msgs_py / image_geometry, none of which install from a registry.
Byte buffers are handed to rclpy as ``array.array('B', ...)``, placed in the message without a
further copy (``_set_data``); ``bytes`` would go through a slow per-element check when
``ROS_PYTHON_CHECK_FIELDS=1`` (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import array

import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

from moadepth_core import geometry
from moadepth_core.errors import DataError
from moadepth_core.geometry import compressed
from moadepth_core.geometry import image_buffers as imaging
from moadepth_core.geometry.camera import PinholeCamera
from moadepth_core.geometry.pointcloud import PackedCloud
from moadepth_core.geometry.postprocess import FloatImage


def _byte_array(data) -> array.array:
    if isinstance(data, array.array) and data.typecode == "B":
        return data
    out = array.array("B")
    out.frombytes(data)  # one memcpy from any bytes-like (bytes, memoryview, ndarray buffer)
    return out


def _set_data(msg: Image | PointCloud2, data) -> None:
    """``msg.data = data`` without the generated setter's copy when ``data`` is already an
    ``array.array('B')``.

    Why: with field checks off (the default) the setter stores ``array.array('B', value)``, a second
    copy of a buffer the core just wrote (docs/PERFORMANCE.md). The generated classes keep
    the field in the ``_data`` slot, which their getter returns as is; where a class has no such
    slot, the setter runs.
    """
    data = _byte_array(data)
    if "_data" in getattr(type(msg), "__slots__", ()):
        msg._data = data
    else:  # pragma: no cover - a rosidl without the slot
        msg.data = data


class OutputBuffers:
    """One reusable ``array.array('B')`` per output, written in place by the core and handed to rclpy.

    Why: a fresh buffer per frame costs an allocation and a copy into the message
    (docs/PERFORMANCE.md). Reuse is safe because ``publish`` converts the
    message synchronously: once it returns, nothing reads the buffer until the next frame writes it.
    One thread (the node's worker) owns an instance.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, array.array] = {}

    def get(self, name: str, nbytes: int) -> array.array:
        """The buffer for output ``name``, holding exactly ``nbytes`` (contents: the last frame's)."""
        buf = self._buffers.get(name)
        if buf is None or len(buf) != nbytes:
            buf = array.array("B", bytes(nbytes))
            self._buffers[name] = buf
        return buf

    def image(self, name: str, height: int, width: int, encoding: str) -> tuple[array.array, np.ndarray]:
        """(buffer, the HxW[xC] array view to write the image into) for a packed ``encoding`` image."""
        dtype, channels = imaging.ENCODINGS[encoding]
        buf = self.get(name, height * width * channels * dtype.itemsize)
        shape = (height, width) if channels == 1 else (height, width, channels)
        return buf, np.frombuffer(buf, dtype=dtype.newbyteorder("<")).reshape(shape)


def image_from_buffer(data: array.array, height: int, width: int, encoding: str,
                      header: Header | None = None) -> Image:
    """Image message carrying ``data`` (packed, little-endian ``encoding`` bytes) without a copy."""
    step = int(width) * imaging.bytes_per_pixel(encoding)
    if len(data) != step * int(height):
        raise DataError(f"a {height}x{width} {encoding} image needs {step * int(height)} bytes, got {len(data)}")
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height = int(height)
    msg.width = int(width)
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = step
    _set_data(msg, data)
    return msg


def float_image_to_msg(image: FloatImage, header: Header | None = None) -> Image:
    """32FC1 Image carrying a core-written :class:`FloatImage`'s buffer without a copy."""
    return image_from_buffer(image.data, *image.array.shape, "32FC1", header)


def image_to_numpy(msg: Image) -> np.ndarray:
    """Decoded view of an Image message (HxW or HxWxC, the encoding's dtype; see imaging.decode_image)."""
    return imaging.decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)


def image_to_rgb8(msg: Image) -> np.ndarray:
    """HxWx3 uint8 RGB from an rgb8/bgr8/rgba8/bgra8/mono8 Image message."""
    return imaging.to_rgb8(image_to_numpy(msg), msg.encoding)


def compressed_to_rgb8(msg: CompressedImage) -> np.ndarray:
    """HxWx3 uint8 RGB from a sensor_msgs/CompressedImage (image_transport's compressed plugin: JPEG/PNG)."""
    return compressed.decode_rgb8(msg.format, msg.data)


def compressed_image_msg(rgb: np.ndarray, codec: str = "jpeg", header: Header | None = None, quality: int = 95) -> CompressedImage:
    """sensor_msgs/CompressedImage of HxWx3 RGB as the compressed plugin publishes it (format, bgr8 coded)."""
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format, data = compressed.encode_rgb8(rgb, codec, quality=quality)
    msg.data = _byte_array(data)
    return msg


def depth_msg_to_metres(msg: Image, depth_scale: float | None = None, *, invalid: float = 0.0) -> np.ndarray:
    """HxW float32 metres from a 16UC1/mono16/32FC1 Image (invalid -> ``invalid``, default 0)."""
    return imaging.depth_to_metres(image_to_numpy(msg), msg.encoding, depth_scale, invalid=invalid)


def numpy_to_image(array_: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """Image message from an array already in ``encoding``'s layout (little-endian, packed step)."""
    data, _ = imaging.encode_image(array_, encoding)
    return image_from_buffer(_byte_array(data), int(array_.shape[0]), int(array_.shape[1]), encoding, header)


def camera_info_to_K(msg: CameraInfo) -> tuple[np.ndarray, tuple[int, int]]:
    """(K 3x3 float64, (height, width)) from a CameraInfo; refuses an uncalibrated (all-zero) K."""
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if not (K[0, 0] > 0 and K[1, 1] > 0):
        raise DataError(
            f"CameraInfo for frame {msg.header.frame_id!r} has no calibration (fx={K[0, 0]}, fy={K[1, 1]})"
        )
    return K, (int(msg.height), int(msg.width))


def make_camera_info(
    header: Header | None,
    K: np.ndarray,
    h: int,
    w: int,
    distortion_model: str = "plumb_bob",
    D=None,
) -> CameraInfo:
    """CameraInfo with K, R = I and P = [K | 0] consistent (a monocular, rectified camera)."""
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    msg = CameraInfo()
    if header is not None:
        msg.header = header
    msg.height = int(h)
    msg.width = int(w)
    msg.distortion_model = distortion_model
    if D is None:
        D = [0.0] * 5 if distortion_model == "plumb_bob" else []
    msg.d = [float(x) for x in D]
    msg.k = K.reshape(-1).tolist()
    msg.r = np.eye(3).reshape(-1).tolist()
    msg.p = np.hstack([K, np.zeros((3, 1))]).reshape(-1).tolist()
    return msg


def camera_from_info(msg: CameraInfo) -> PinholeCamera:
    """The camera a CameraInfo describes, parsed and validated once; DataError names what is wrong
    (uncalibrated, non-finite K, empty size)."""
    K, hw = camera_info_to_K(msg)
    if not np.isfinite(K).all():
        raise DataError(f"CameraInfo for frame {msg.header.frame_id!r} has a non-finite K {K.ravel().tolist()}")
    if hw[0] <= 0 or hw[1] <= 0:
        raise DataError(f"CameraInfo for frame {msg.header.frame_id!r} has an empty size {hw[1]}x{hw[0]}")
    return PinholeCamera.from_K(K, hw)


def camera_info_msg(source: CameraInfo, camera: PinholeCamera, header: Header | None = None) -> CameraInfo:
    """``source`` for an image of ``camera``'s size: K from ``camera``, P scaled alongside it, D, R and
    the distortion model kept; the header is ``header`` (default: ``source``'s)."""
    hw = (int(source.height), int(source.width))
    P = np.asarray(source.p, dtype=np.float64).reshape(3, 4)
    if P.any():
        P2 = P.copy()
        P2[:, :3] = geometry.scale_intrinsics(P[:, :3], hw, camera.hw)
        sx, sy = camera.width / hw[1], camera.height / hw[0]
        P2[0, 3] = P[0, 3] * sx  # Tx = -fx' * baseline scales with fx
        P2[1, 3] = P[1, 3] * sy
    else:  # no projection given: the rectified monocular one, [K | 0]
        P2 = np.zeros((3, 4))
        P2[:, :3] = camera.K
    out = CameraInfo()
    out.header = source.header if header is None else header
    out.height, out.width = camera.height, camera.width
    out.distortion_model = source.distortion_model
    out.d = list(source.d)
    out.k = camera.K.reshape(-1).tolist()
    out.r = list(source.r)
    out.p = P2.reshape(-1).tolist()
    return out


def scaled_camera_info(msg: CameraInfo, to_hw: tuple[int, int]) -> CameraInfo:
    """A copy of ``msg`` for the image resized to ``to_hw``: K and P scaled, header/D/R kept."""
    return camera_info_msg(msg, camera_from_info(msg).scaled(to_hw))


def cloud_to_msg(packed: PackedCloud, header: Header | None = None) -> PointCloud2:
    """PointCloud2 carrying a PackedCloud's bytes and field layout unchanged."""
    msg = PointCloud2()
    if header is not None:
        msg.header = header
    msg.height = int(packed.height)
    msg.width = int(packed.width)
    msg.fields = [
        PointField(name=name, offset=int(offset), datatype=int(datatype), count=int(count))
        for name, offset, datatype, count in packed.fields
    ]
    msg.is_bigendian = bool(packed.is_bigendian)
    msg.point_step = int(packed.point_step)
    msg.row_step = int(packed.row_step)
    _set_data(msg, packed.data)
    msg.is_dense = bool(packed.is_dense)
    return msg


def msg_to_packed(msg: PointCloud2) -> PackedCloud:
    """The inverse of :func:`cloud_to_msg` (for tests and bag tools)."""
    return PackedCloud(
        data=bytes(msg.data),
        height=msg.height,
        width=msg.width,
        point_step=msg.point_step,
        row_step=msg.row_step,
        fields=[(f.name, f.offset, f.datatype, f.count) for f in msg.fields],
        is_dense=msg.is_dense,
        is_bigendian=msg.is_bigendian,
    )
