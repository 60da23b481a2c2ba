"""image_transport's compressed images <-> numpy: ``compressed`` (JPEG/PNG colour) and ``compressedDepth``.

What the ``format`` field of a ``sensor_msgs/CompressedImage`` says, as image_transport_plugins
writes it:

- ``compressed`` plugin: ``"<source encoding>; <jpeg|png> compressed <coded encoding>"``, e.g.
  ``"bgr8; jpeg compressed bgr8"`` or ``"rgb8; jpeg compressed bgr8"``; older drivers write a bare
  ``"jpeg"`` or ``"png"``. The coded pixels are OpenCV's (BGR for colour), whatever the source
  encoding was, so decoding is ``cv2.imdecode`` then BGR -> RGB.
- ``compressedDepth`` plugin: ``"16UC1; compressedDepth png"`` or ``"32FC1; compressedDepth png"``
  (``"32FC1; compressedDepth"`` in older versions). ``data`` starts with the plugin's 12-byte
  ``ConfigHeader`` {int32 format (0 = INV_DEPTH), float32 depthParam[2]}, then a 16-bit PNG. 16UC1
  is the raw depth; 32FC1 is quantised inverse depth: ``q = A / d + B`` truncated to uint16 with
  ``A = z0 (z0 + 1)`` and ``B = 1 - A / depth_max`` (``q = 0`` for ``d >= depth_max`` and NaN),
  decoded as ``d = A / (q - B)`` and NaN where ``q = 0`` (compressed_depth_image_transport's
  ``codec.cpp``, mirrored by :func:`decode_depth` and :func:`encode_depth`).

Anything that cannot be decoded (an unknown format, a truncated or corrupt stream, a header that
does not fit its payload) raises :class:`DataError` with one sentence. No ROS import: the node
(``moadepth_ros.messages``) and the bag reader (``data/rosbag``) both call this module.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

from moadepth_core.errors import DataError

#: compressed_depth_image_transport's ConfigHeader: int32 format, float32 depthParam[2] (little-endian).
CONFIG_HEADER = struct.Struct("<iff")
#: ConfigHeader.format for inverse-depth coding (compression_common.h: enum {UNDEFINED = -1, INV_DEPTH}).
INV_DEPTH = 0
#: The plugin's defaults: depth_max 10 m, depth_quantization 100, png_level 9.
DEFAULT_DEPTH_MAX = 10.0
DEFAULT_DEPTH_QUANTIZATION = 100.0
DEFAULT_PNG_LEVEL = 9

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"


def _short(fmt: str) -> str:
    return fmt if len(fmt) <= 60 else fmt[:57] + "..."


def is_compressed_depth(fmt: str) -> bool:
    """True for a ``compressedDepth`` format string (depth), False for a colour one."""
    return "compresseddepth" in str(fmt).lower()


def colour_codec(fmt: str) -> str:
    """``"jpeg"`` or ``"png"`` from a ``compressed`` plugin format string; DataError for anything else."""
    f = str(fmt).strip().lower()
    if ";" in f:
        tail = f.split(";", 1)[1]
        if "compresseddepth" in tail:
            raise DataError(f"format {_short(fmt)!r} is compressedDepth (a depth image), not a colour image")
        for codec in ("jpeg", "png"):
            if f"{codec} compressed" in tail:
                return codec
    elif f in ("jpeg", "jpg"):
        return "jpeg"
    elif f == "png":
        return "png"
    raise DataError(f"unknown compressed image format {_short(fmt)!r}; expected image_transport's "
                    f"'<encoding>; jpeg compressed <encoding>', its png twin, or a bare 'jpeg'/'png'")


def _check_stream(codec: str, data: bytes, what: str) -> None:
    """Refuse a stream that is not ``codec`` or stops before its end marker (OpenCV would decode a
    truncated JPEG into a half-grey picture with only a warning on stderr)."""
    if codec == "jpeg":
        if not data.startswith(_JPEG_MAGIC):
            raise DataError(f"{what} says jpeg but its {len(data)} bytes do not start like a JPEG stream")
        if not data.rstrip(b"\0").endswith(b"\xff\xd9"):
            raise DataError(f"{what}: the JPEG stream of {len(data)} bytes is truncated (no end-of-image marker)")
    else:
        if not data.startswith(_PNG_MAGIC):
            raise DataError(f"{what} says png but its {len(data)} bytes do not start like a PNG stream")
        if _PNG_END not in data[-16:]:
            raise DataError(f"{what}: the PNG stream of {len(data)} bytes is truncated (no IEND chunk)")


def _imdecode(data: bytes, flags: int, what: str) -> np.ndarray:
    try:
        out = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error as exc:
        raise DataError(f"{what} cannot be decoded: {str(exc).strip().splitlines()[-1]}") from None
    if out is None or out.size == 0:
        raise DataError(f"{what} is corrupt: OpenCV could not decode its {len(data)} bytes")
    return out


def decode_rgb8(fmt: str, data) -> np.ndarray:
    """Contiguous HxWx3 uint8 RGB from a ``compressed`` CompressedImage's ``format`` and ``data``.

    Colour (BGR/BGRA as coded) becomes RGB, grey is replicated, 16-bit PNG is scaled to 8 bits.
    """
    codec = colour_codec(fmt)
    raw = bytes(data)
    what = f"compressed image ({_short(fmt)})"
    if not raw:
        raise DataError(f"{what} has no data")
    _check_stream(codec, raw, what)
    img = _imdecode(raw, cv2.IMREAD_UNCHANGED, what)
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise DataError(f"{what} decodes to {img.dtype} pixels, not 8 or 16-bit")
    if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        return np.ascontiguousarray(np.repeat(img.reshape(img.shape[0], img.shape[1], 1), 3, axis=2))
    if img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    raise DataError(f"{what} decodes to {img.shape[2]} channels")


def encode_rgb8(rgb: np.ndarray, codec: str = "jpeg", quality: int = 95, source_encoding: str = "rgb8",
                png_level: int = 3) -> tuple[str, bytes]:
    """(format, data) of HxWx3 uint8 RGB as the ``compressed`` plugin publishes it (coded as bgr8)."""
    if codec not in ("jpeg", "png"):
        raise DataError(f"unknown image codec {codec!r}; expected jpeg or png")
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise DataError(f"expected an HxWx3 uint8 RGB image, got shape {rgb.shape} and dtype {rgb.dtype}")
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if codec == "jpeg" else [cv2.IMWRITE_PNG_COMPRESSION,
                                                                             int(png_level)]
    ok, buf = cv2.imencode(".jpg" if codec == "jpeg" else ".png", bgr, params)
    if not ok:
        raise DataError(f"OpenCV could not encode a {rgb.shape[1]}x{rgb.shape[0]} image as {codec}")
    return f"{source_encoding}; {codec} compressed bgr8", buf.tobytes()


def depth_encoding(fmt: str) -> str:
    """``"16UC1"`` or ``"32FC1"`` from a compressedDepth format string; DataError for others (rvl too)."""
    f = str(fmt).strip()
    encoding, _, tail = f.partition(";")
    encoding = encoding.strip()
    tail = tail.strip()
    if tail and tail not in ("compressedDepth", "compressedDepth png"):
        if "compressedDepth rvl" in tail:
            raise DataError(f"compressedDepth format {_short(fmt)!r}: the rvl codec is not supported, only png")
        raise DataError(f"unknown compressedDepth format {_short(fmt)!r}; expected "
                        f"'16UC1; compressedDepth png' or '32FC1; compressedDepth png'")
    if encoding not in ("16UC1", "mono16", "32FC1"):
        raise DataError(f"compressedDepth format {_short(fmt)!r} names encoding {encoding!r}; expected "
                        f"16UC1 or 32FC1")
    return encoding


def decode_depth(fmt: str, data) -> tuple[np.ndarray, str]:
    """(HxW depth, encoding) of a compressedDepth CompressedImage: uint16 as recorded for 16UC1,
    float32 metres (NaN where invalid) for 32FC1, decoded as the plugin's ``codec.cpp`` does."""
    encoding = depth_encoding(fmt)
    raw = bytes(data)
    what = f"compressedDepth image ({_short(fmt)})"
    if len(raw) <= CONFIG_HEADER.size:
        raise DataError(f"{what} has {len(raw)} bytes, not even its {CONFIG_HEADER.size}-byte header and data")
    kind, quant_a, quant_b = CONFIG_HEADER.unpack_from(raw)
    payload = raw[CONFIG_HEADER.size:]
    if kind != INV_DEPTH:
        raise DataError(f"{what} has header format {kind}, not INV_DEPTH ({INV_DEPTH}): the header does not "
                        f"match the payload")
    if encoding == "32FC1" and not (np.isfinite(quant_a) and np.isfinite(quant_b) and quant_a > 0):
        raise DataError(f"{what} has quantisation parameters A={quant_a} B={quant_b}, which cannot code "
                        f"inverse depth")
    _check_stream("png", payload, what)
    img = _imdecode(payload, cv2.IMREAD_UNCHANGED, what)
    if img.dtype != np.uint16 or img.ndim != 2:
        raise DataError(f"{what} holds a {img.dtype} image of shape {img.shape}, not the single-channel "
                        f"16-bit PNG its header announces")
    if encoding != "32FC1":
        return img, encoding
    inv = img.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.float32(quant_a) / (inv - np.float32(quant_b))
    depth[img == 0] = np.nan
    return depth.astype(np.float32, copy=False), encoding


def encode_depth(depth: np.ndarray, encoding: str = "32FC1", depth_max: float = DEFAULT_DEPTH_MAX,
                 depth_quantization: float = DEFAULT_DEPTH_QUANTIZATION,
                 png_level: int = DEFAULT_PNG_LEVEL) -> tuple[str, bytes]:
    """(format, data) of a depth image as compressedDepth publishes it (png).

    ``32FC1``: float metres, quantised to inverse depth (NaN, <= 0 and >= ``depth_max`` become 0;
    values past uint16 are clipped where the C++ cast would wrap). ``16UC1``: uint16 as is, values
    above ``depth_max`` * 1000 set to 0 like the plugin's max-depth filter.
    """
    d = np.asarray(depth)
    if d.ndim != 2 or d.size == 0:
        raise DataError(f"expected an HxW depth image, got shape {d.shape}")
    params = [cv2.IMWRITE_PNG_COMPRESSION, int(png_level)]
    if encoding == "32FC1":
        d = d.astype(np.float32, copy=False)
        z0, dmax = np.float32(depth_quantization), np.float32(depth_max)
        quant_a = np.float32(z0 * (z0 + np.float32(1.0)))
        quant_b = np.float32(np.float32(1.0) - quant_a / dmax)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            q = quant_a / d + quant_b
        keep = (d < dmax) & (d > 0) & np.isfinite(q)
        inv = np.zeros(d.shape, dtype=np.uint16)
        inv[keep] = np.clip(q[keep], 0, 65535).astype(np.uint16)  # float -> uint16 truncates, as in C++
        header = CONFIG_HEADER.pack(INV_DEPTH, float(quant_a), float(quant_b))
        image = inv
    elif encoding in ("16UC1", "mono16"):
        if d.dtype != np.uint16:
            raise DataError(f"16UC1 depth must be uint16, got {d.dtype}")
        image = d.copy()
        image[image > np.uint16(min(int(depth_max * 1000.0), 65535))] = 0
        header = CONFIG_HEADER.pack(INV_DEPTH, 0.0, 0.0)
    else:
        raise DataError(f"compressedDepth codes 16UC1 or 32FC1 depth, not {encoding!r}")
    ok, buf = cv2.imencode(".png", image, params)
    if not ok:
        raise DataError(f"OpenCV could not encode a {d.shape[1]}x{d.shape[0]} depth image as png")
    return f"{encoding}; compressedDepth png", header + buf.tobytes()
