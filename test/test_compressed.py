"""image_transport's compressed and compressedDepth formats (moadepth_core.geometry.compressed), no ROS.

The compressedDepth messages here are built byte for byte as compressed_depth_image_transport's
codec.cpp writes them: a 12-byte ConfigHeader (int32 INV_DEPTH = 0, float32 depthParam[2]) then a
16-bit PNG (level 9) of the depth (16UC1) or of ``(uint16)(A / d + B)`` (32FC1) with
``A = z0 (z0 + 1)``, ``B = 1 - A / depth_max``, float arithmetic, 0 for ``d >= depth_max`` or NaN.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from moadepth_core.errors import DataError
from moadepth_core.geometry import compressed


def _rgb(h=48, w=72, seed=0):
    # smooth picture: JPEG keeps it within a few levels
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (h + w)], axis=2).astype(np.uint8)
    return rgb


def _plugin_jpeg(rgb, quality=95):
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def _plugin_png(rgb):
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    assert ok
    return buf.tobytes()


def _plugin_compressed_depth_32f(depth, depth_max=10.0, z0=100.0):
    """codec.cpp's encodeCompressedDepthImage for 32FC1, written out step by step."""
    a = np.float32(np.float32(z0) * (np.float32(z0) + np.float32(1.0)))
    b = np.float32(np.float32(1.0) - a / np.float32(depth_max))
    inv = np.zeros(depth.shape, np.uint16)
    for (i, j), d in np.ndenumerate(depth.astype(np.float32)):
        if d < np.float32(depth_max):  # NaN compares false
            inv[i, j] = int(a / d + b)  # the C++ float -> unsigned short conversion truncates
    ok, png = cv2.imencode(".png", inv, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert ok
    return "32FC1; compressedDepth png", struct.pack("<i", 0) + struct.pack("<ff", a, b) + png.tobytes(), a


def _plugin_compressed_depth_16u(depth_mm, depth_max=10.0):
    img = depth_mm.copy()
    img[img > int(depth_max * 1000.0)] = 0
    ok, png = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert ok
    return "16UC1; compressedDepth png", struct.pack("<iff", 0, 0.0, 0.0) + png.tobytes()


@pytest.mark.parametrize("fmt", ["bgr8; jpeg compressed bgr8", "rgb8; jpeg compressed bgr8", "jpeg"])
def test_jpeg_format_strings_decode_to_rgb(fmt):
    rgb = _rgb()
    out = compressed.decode_rgb8(fmt, _plugin_jpeg(rgb))
    assert out.shape == rgb.shape and out.dtype == np.uint8 and out.flags.c_contiguous
    assert np.abs(out.astype(int) - rgb).mean() < 3.0  # RGB order kept (BGR would be far off)


@pytest.mark.parametrize("fmt", ["bgr8; png compressed bgr8", "rgb8; png compressed bgr8", "png"])
def test_png_format_strings_decode_exactly(fmt):
    rgb = _rgb()
    np.testing.assert_array_equal(compressed.decode_rgb8(fmt, _plugin_png(rgb)), rgb)


def test_mono_png_is_replicated_and_encoder_round_trips():
    grey = _rgb()[..., 0]
    ok, png = cv2.imencode(".png", grey)
    out = compressed.decode_rgb8("mono8; png compressed mono8", png.tobytes())
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))
    fmt, data = compressed.encode_rgb8(_rgb(), "png")
    assert fmt == "rgb8; png compressed bgr8"
    np.testing.assert_array_equal(compressed.decode_rgb8(fmt, data), _rgb())


@pytest.mark.parametrize("fmt, data, words", [
    ("bgr8; theora compressed bgr8", b"\xff\xd8\xff\xe0", "unknown compressed image format"),
    ("h264", b"\0\0\0\1", "unknown compressed image format"),
    ("jpeg", b"", "no data"),
    ("jpeg", b"this is not an image at all", "do not start like a JPEG"),
    ("png", b"\xff\xd8\xff\xe0 jpeg bytes", "do not start like a PNG"),
    ("16UC1; compressedDepth png", b"x" * 40, r"compressedDepth \(a depth image\)"),
])
def test_bad_colour_input_is_one_sentence(fmt, data, words):
    with pytest.raises(DataError, match=words) as err:
        compressed.decode_rgb8(fmt, data)
    assert "\n" not in str(err.value)


def test_truncated_and_corrupt_streams_are_refused():
    jpeg, png = _plugin_jpeg(_rgb()), _plugin_png(_rgb())
    with pytest.raises(DataError, match="truncated"):
        compressed.decode_rgb8("jpeg", jpeg[: len(jpeg) // 2])
    with pytest.raises(DataError, match="truncated"):
        compressed.decode_rgb8("png", png[: len(png) // 2])
    broken = bytearray(png)
    broken[40:80] = b"\0" * 40  # inside IDAT: zlib / CRC errors
    with pytest.raises(DataError, match="corrupt|cannot be decoded"):
        compressed.decode_rgb8("png", bytes(broken))


def test_compressed_depth_32fc1_bytes_match_the_plugin_and_decode_within_one_quantisation_step():
    rng = np.random.default_rng(3)
    depth = rng.uniform(0.3, 9.5, (30, 40)).astype(np.float32)
    depth[0, :5] = np.nan
    depth[1, :5] = 12.0  # beyond depth_max
    fmt, data, a = _plugin_compressed_depth_32f(depth)
    mine_fmt, mine = compressed.encode_depth(depth, "32FC1")
    assert (mine_fmt, mine) == (fmt, data)  # byte for byte
    out, enc = compressed.decode_depth(fmt, data)
    assert enc == "32FC1" and out.dtype == np.float32 and out.shape == depth.shape
    assert np.isnan(out[0, :5]).all() and np.isnan(out[1, :5]).all()
    ok = np.isfinite(depth) & (depth < 10.0)
    step = depth[ok] ** 2 / a  # one unit of inverse depth, in metres
    assert (np.abs(out[ok] - depth[ok]) <= step * 1.01 + 1e-6).all()
    # the old format string without the codec name means png
    np.testing.assert_array_equal(compressed.decode_depth("32FC1; compressedDepth", data)[0][ok], out[ok])


def test_compressed_depth_16uc1_is_the_recorded_millimetres():
    mm = np.random.default_rng(4).integers(0, 12000, (20, 30)).astype(np.uint16)
    fmt, data = _plugin_compressed_depth_16u(mm)
    assert compressed.encode_depth(mm, "16UC1") == (fmt, data)
    out, enc = compressed.decode_depth(fmt, data)
    assert enc == "16UC1"
    expected = mm.copy()
    expected[expected > 10000] = 0
    np.testing.assert_array_equal(out, expected)


def test_compressed_depth_with_a_header_that_does_not_fit_its_payload_is_refused():
    fmt, data, _ = _plugin_compressed_depth_32f(np.full((8, 8), 2.0, np.float32))
    png8 = cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes()
    cases = [
        (fmt, data[:10], "not even its 12-byte header"),
        (fmt, struct.pack("<iff", -1, 1.0, 1.0) + data[12:], "not INV_DEPTH"),
        (fmt, struct.pack("<iff", 0, float("nan"), 0.0) + data[12:], "cannot code inverse depth"),
        (fmt, data[:12] + png8, "not the single-channel 16-bit PNG"),
        (fmt, data[:12] + b"\xff\xd8\xff\xe0 jpeg", "do not start like a PNG"),
        (fmt, data[: 12 + (len(data) - 12) // 2], "truncated"),
        ("32FC1; compressedDepth rvl", data, "rvl codec is not supported"),
        ("32FC1; compressedDepth zstd", data, "unknown compressedDepth format"),
        ("rgb8; compressedDepth png", data, "expected 16UC1 or 32FC1"),
    ]
    for f, d, words in cases:
        with pytest.raises(DataError, match=words) as err:
            compressed.decode_depth(f, d)
        assert "\n" not in str(err.value)
