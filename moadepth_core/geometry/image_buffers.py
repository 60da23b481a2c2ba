"""Raw ROS-style image buffers (encoding, step, endianness) <-> numpy.

``cv_bridge`` cannot be installed from a package registry, so this module does
its job for the encodings moadepth uses, without importing ROS: the message
adapters in ``moadepth_ros.messages`` and the rosbag2 readers (which see the
same fields through ``rosbags``) both call it.

Conventions
-----------
- Decoding is zero-copy where the bytes allow it: the result is a (possibly
  read-only, possibly row-strided) view of the message buffer. Copy it before
  writing into it. Big-endian 16/32-bit data are byte-swapped into a native copy.
- Colour images leave :func:`to_rgb8` as contiguous HxWx3 ``uint8`` RGB.
- Depth leaves :func:`depth_to_metres` as HxW ``float32`` metres along the
  camera Z axis (REP 118). Invalid pixels (0, negative, NaN, +-Inf) become
  ``invalid`` (default ``0.0``, the core's dataset/loss convention from
  docs/ARCHITECTURE.md; pass ``invalid=np.nan`` for REP 117 style output).
  :func:`valid_depth_mask` accepts either convention.
- Encoding writes little-endian data (``is_bigendian = 0``) and a packed step.
"""

from __future__ import annotations

import numpy as np

from moadepth_core.errors import DataError

# encoding -> (numpy base dtype, channels)
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "8UC3": (np.dtype(np.uint8), 3),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}
COLOUR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1", "8UC3")
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")
#: REP 118: 16-bit depth is in millimetres.
DEFAULT_DEPTH_SCALE = 1000.0
# Refuse anything beyond this many pixels (2^31): far past any camera, and it keeps
# the size checks meaningful when a header is corrupt.
_MAX_PIXELS = 1 << 31


def _spec(encoding: str) -> tuple[np.dtype, int]:
    try:
        return ENCODINGS[encoding]
    except (KeyError, TypeError):
        raise DataError(
            f"unsupported image encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}"
        ) from None


def bytes_per_pixel(encoding: str) -> int:
    """Bytes one pixel of ``encoding`` takes (3 for rgb8, 2 for 16UC1, ...)."""
    dtype, channels = _spec(encoding)
    return dtype.itemsize * channels


def _as_byte_array(data) -> np.ndarray:
    """A flat uint8 view of bytes / bytearray / memoryview / array.array / ndarray, copying only lists."""
    if isinstance(data, np.ndarray):
        flat = data.reshape(-1) if data.flags.c_contiguous else np.ascontiguousarray(data).reshape(-1)
        return flat.view(np.uint8) if flat.dtype != np.uint8 else flat
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError, BufferError):
        try:
            return np.asarray(data, dtype=np.uint8).reshape(-1)
        except (TypeError, ValueError, OverflowError) as exc:
            raise DataError(f"image data of type {type(data).__name__} is not a byte buffer") from exc


def decode_image(
    encoding: str,
    height: int,
    width: int,
    step: int,
    data,
    is_bigendian: bool | int = False,
) -> np.ndarray:
    """Decode a sensor_msgs/Image-style buffer to HxW or HxWxC in the encoding's native dtype.

    Row padding (``step > width * bytes_per_pixel``) is skipped with strides, not copied, so a
    640x480 rgb8 frame decodes in microseconds. Raises :class:`DataError` for unsupported
    encodings and for sizes the buffer cannot hold.
    """
    dtype, channels = _spec(encoding)
    try:
        height, width, step = int(height), int(width), int(step)
    except (TypeError, ValueError):
        raise DataError(f"{encoding} image has non-integer size fields") from None
    if height <= 0 or width <= 0:
        raise DataError(f"{encoding} image has zero or negative size {width}x{height}")
    if height * width > _MAX_PIXELS:
        raise DataError(f"{encoding} image size {width}x{height} is absurdly large")
    bpp = dtype.itemsize * channels
    row_bytes = width * bpp
    if step < row_bytes:
        raise DataError(
            f"{encoding} image step {step} is smaller than width {width} x {bpp} bytes per pixel"
        )
    buf = _as_byte_array(data)
    if buf.size < step * height:
        raise DataError(
            f"{encoding} image data holds {buf.size} bytes but {width}x{height} with step {step} "
            f"needs {step * height}"
        )
    big = bool(is_bigendian) and dtype.itemsize > 1
    view_dtype = dtype.newbyteorder(">") if big else dtype.newbyteorder("<")
    shape: tuple[int, ...] = (height, width) if channels == 1 else (height, width, channels)
    strides: tuple[int, ...] = (step, bpp) if channels == 1 else (step, bpp, dtype.itemsize)
    arr = np.ndarray(shape=shape, dtype=view_dtype, buffer=buf, offset=0, strides=strides)
    if view_dtype != dtype:  # foreign byte order: one native copy
        arr = arr.astype(dtype)
    return arr


def to_rgb8(array: np.ndarray, encoding: str) -> np.ndarray:
    """Contiguous HxWx3 uint8 RGB from a decoded colour image (what the network consumes).

    bgr is reversed, alpha dropped, mono replicated; ``8UC3`` has no colour order and is kept
    as stored. Depth/float encodings are refused: they mean a wrong topic remap.
    """
    if encoding not in COLOUR_ENCODINGS:
        if encoding in ENCODINGS:
            raise DataError(f"expected a colour image, got {encoding}")
        _spec(encoding)
    _check_shape(array, encoding)
    if encoding in ("rgb8", "8UC3"):
        out = array
    elif encoding == "bgr8":
        out = array[..., ::-1]
    elif encoding == "rgba8":
        out = array[..., :3]
    elif encoding == "bgra8":
        out = array[..., 2::-1]
    else:  # mono8 / 8UC1
        out = np.repeat(array[:, :, None], 3, axis=2)
    return np.ascontiguousarray(out)


def _check_shape(array: np.ndarray, encoding: str) -> None:
    dtype, channels = _spec(encoding)
    ok_shape = array.ndim == 2 if channels == 1 else (array.ndim == 3 and array.shape[2] == channels)
    if channels == 1 and array.ndim == 3 and array.shape[2] == 1:
        ok_shape = True
    if not ok_shape or array.dtype.kind != dtype.kind or array.dtype.itemsize != dtype.itemsize:
        raise DataError(
            f"array of shape {array.shape} and dtype {array.dtype} does not match encoding {encoding} "
            f"({channels} channel(s) of {dtype})"
        )


def depth_to_metres(
    array: np.ndarray,
    encoding: str,
    depth_scale: float | None = None,
    *,
    invalid: float = 0.0,
) -> np.ndarray:
    """HxW float32 metres from a decoded depth image (always a new array).

    16UC1/mono16 are divided by ``depth_scale`` units per metre (default 1000: millimetres,
    REP 118); 32FC1 is already metres and ignores ``depth_scale`` (a bag-wide scale flag must not
    rescale float topics). Zero, negative and non-finite depths become
    ``invalid`` (0.0 by default, the core convention; NaN for ROS output).
    """
    if encoding not in DEPTH_ENCODINGS:
        _spec(encoding)
        raise DataError(f"expected a depth image (16UC1, mono16 or 32FC1), got {encoding}")
    _check_shape(array, encoding)
    if array.ndim == 3:
        array = array[:, :, 0]
    if encoding == "32FC1":
        out = np.array(array, dtype=np.float32, copy=True)
        bad = ~(out > 0) | ~np.isfinite(out)  # NaN fails "> 0"
    else:
        scale = DEFAULT_DEPTH_SCALE if depth_scale is None else _check_scale(depth_scale)
        out = np.divide(array, np.float32(scale), dtype=np.float32)
        bad = array == 0
    out[bad] = invalid
    return out


def _check_scale(depth_scale: float) -> float:
    try:
        scale = float(depth_scale)
    except (TypeError, ValueError):
        raise DataError(f"depth_scale {depth_scale!r} is not a number") from None
    if not (np.isfinite(scale) and scale > 0):
        raise DataError(f"depth_scale {depth_scale!r} must be a positive number of units per metre")
    return scale


def valid_depth_mask(depth: np.ndarray) -> np.ndarray:
    """Boolean mask of usable depth: finite and > 0 (works for the 0 and the NaN convention)."""
    return np.isfinite(depth) & (depth > 0)


def encode_image(array: np.ndarray, encoding: str) -> tuple[bytes, int]:
    """Pack an array into little-endian, unpadded image bytes; returns ``(data, step)``.

    The array must already be in the encoding's layout (e.g. HxWx3 uint8 for rgb8, HxW
    float32 for 32FC1); float data for 32FC1 is cast to float32, nothing else is converted.
    """
    dtype, channels = _spec(encoding)
    array = np.asarray(array)
    if encoding == "32FC1" and array.dtype.kind == "f":
        array = array.astype(np.float32, copy=False)
    _check_shape(array, encoding)
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise DataError(f"cannot encode an empty {encoding} image of shape {array.shape}")
    le = np.ascontiguousarray(array, dtype=dtype.newbyteorder("<"))
    return le.tobytes(), int(array.shape[1]) * dtype.itemsize * channels


def encode_depth_32fc1(depth: np.ndarray) -> tuple[bytes, int]:
    """32FC1 bytes of HxW depth in metres (NaN kept as NaN): the node's depth output."""
    return encode_image(np.asarray(depth, dtype=np.float32), "32FC1")
