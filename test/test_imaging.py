"""imaging.decode_image / encode_image / to_rgb8 / depth_to_metres against rosbags-image.

Reference notes: ``rosbags.image.message_to_cvimage(msg)`` (no colour conversion) returns the
buffer in its stored channel order (what cv2 expects for bgr8), so decode_image (which also
keeps stored order) must match it exactly; colour *conversion* is compared with
``message_to_cvimage(msg, "rgb8")``. rosbags-image ignores ``step`` (it assumes packed rows),
so padded messages are checked against the reference decode of the same pixels unpadded.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rosbags.image import message_to_cvimage
from rosbags.typesys import Stores, get_typestore

from moadepth_core.errors import DataError
from moadepth_core.geometry import image_buffers as imaging

TS = get_typestore(Stores.ROS2_KILTED)
RosImage = TS.types["sensor_msgs/msg/Image"]
Header = TS.types["std_msgs/msg/Header"]
Time = TS.types["builtin_interfaces/msg/Time"]

ENCODINGS = ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1", "8UC3", "mono16", "16UC1", "32FC1"]


def _random(encoding: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    dtype, ch = imaging.ENCODINGS[encoding]
    shape = (h, w) if ch == 1 else (h, w, ch)
    if dtype == np.float32:
        return rng.uniform(0.1, 10.0, shape).astype(np.float32)
    return rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)


def _raw(arr: np.ndarray, big: bool, pad: int) -> tuple[bytes, int]:
    """Bytes of ``arr`` in the given byte order with ``pad`` junk bytes after every row."""
    a = arr.astype(arr.dtype.newbyteorder(">" if big else "<"))
    rows = a.reshape(a.shape[0], -1).view(np.uint8)
    padded = np.concatenate([rows, np.full((rows.shape[0], pad), 0xAB, np.uint8)], axis=1)
    return padded.tobytes(), rows.shape[1] + pad


def _rosmsg(encoding: str, arr: np.ndarray, big: bool = False):
    data, step = _raw(arr, big, 0)
    return RosImage(
        header=Header(stamp=Time(sec=0, nanosec=0), frame_id="cam"),
        height=arr.shape[0], width=arr.shape[1], encoding=encoding, is_bigendian=int(big),
        step=step, data=np.frombuffer(data, np.uint8),
    )


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("pad", [0, 5])
def test_decode_matches_rosbags_image(encoding, big, pad):
    rng = np.random.default_rng(0)
    arr = _random(encoding, 7, 11, rng)
    ref = message_to_cvimage(_rosmsg(encoding, arr, big))
    data, step = _raw(arr, big, pad)
    out = imaging.decode_image(encoding, 7, 11, step, data, is_bigendian=big)
    assert out.dtype == ref.dtype.newbyteorder("=") and out.shape == ref.shape
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_to_rgb8_matches_rosbags_conversion(encoding):
    arr = _random(encoding, 6, 9, np.random.default_rng(1))
    ref = message_to_cvimage(_rosmsg(encoding, arr), "rgb8")
    data, step = _raw(arr, False, 3)
    rgb = imaging.to_rgb8(imaging.decode_image(encoding, 6, 9, step, data), encoding)
    assert rgb.dtype == np.uint8 and rgb.shape == (6, 9, 3) and rgb.flags.c_contiguous
    np.testing.assert_array_equal(rgb, ref)


def test_decode_is_zero_copy():
    arr = _random("rgb8", 480, 640, np.random.default_rng(2))
    data = arr.tobytes()
    out = imaging.decode_image("rgb8", 480, 640, 640 * 3, data)
    assert np.shares_memory(out, np.frombuffer(data, np.uint8))
    padded, step = _raw(arr, False, 64)
    out = imaging.decode_image("rgb8", 480, 640, step, padded)
    assert np.shares_memory(out, np.frombuffer(padded, np.uint8))
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_encode_decode_round_trip(encoding):
    arr = _random(encoding, 5, 8, np.random.default_rng(3))
    data, step = imaging.encode_image(arr, encoding)
    assert step == 8 * imaging.bytes_per_pixel(encoding) and len(data) == step * 5
    np.testing.assert_array_equal(imaging.decode_image(encoding, 5, 8, step, data), arr)


def test_encode_depth_32fc1_keeps_nan_and_is_little_endian():
    depth = np.array([[1.5, np.nan], [0.0, 2.25]], np.float64)
    data, step = imaging.encode_depth_32fc1(depth)
    assert step == 8
    np.testing.assert_array_equal(np.frombuffer(data, "<f4").reshape(2, 2), depth.astype(np.float32))


def test_to_rgb8_refuses_depth():
    with pytest.raises(DataError, match="expected a colour image, got 16UC1"):
        imaging.to_rgb8(np.zeros((2, 2), np.uint16), "16UC1")


def test_depth_to_metres_conventions():
    mm = np.array([[0, 1000], [1500, 65535]], np.uint16)
    m = imaging.depth_to_metres(mm, "16UC1")
    assert m.dtype == np.float32
    np.testing.assert_allclose(m, [[0.0, 1.0], [1.5, 65.535]], rtol=1e-6)
    np.testing.assert_allclose(imaging.depth_to_metres(mm, "mono16", depth_scale=5000)[1, 0], 0.3, rtol=1e-6)
    nan = imaging.depth_to_metres(mm, "16UC1", invalid=np.nan)
    assert np.isnan(nan[0, 0]) and nan[0, 1] == 1.0
    f = np.array([[np.nan, np.inf], [-1.0, 2.5]], np.float32)
    out = imaging.depth_to_metres(f, "32FC1", depth_scale=1000)  # float ignores the scale
    np.testing.assert_array_equal(out, [[0, 0], [0, 2.5]])
    assert f[1, 1] == 2.5 and np.isnan(f[0, 0])  # input untouched
    np.testing.assert_array_equal(imaging.valid_depth_mask(out), [[False, False], [False, True]])
    np.testing.assert_array_equal(imaging.valid_depth_mask(nan), [[False, True], [True, True]])
    with pytest.raises(DataError, match="expected a depth image"):
        imaging.depth_to_metres(np.zeros((2, 2, 3), np.uint8), "rgb8")
    with pytest.raises(DataError, match="depth_scale"):
        imaging.depth_to_metres(mm, "16UC1", depth_scale=0)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("yuv422", 2, 2, 4, bytes(8)), "unsupported image encoding 'yuv422'"),
        (("rgb8", 2, 2, 5, bytes(10)), "step 5 is smaller"),
        (("rgb8", 2, 2, 6, bytes(11)), "holds 11 bytes"),
        (("mono8", 0, 4, 4, b""), "zero or negative size"),
        (("32FC1", 100000, 100000, 400000, bytes(16)), "absurdly large"),
        (("16UC1", 10**6, 10, 20, bytes(64)), "needs 20000000"),
    ],
)
def test_malformed_messages_raise_one_sentence(args, words):
    with pytest.raises(DataError, match=words) as info:
        imaging.decode_image(*args)
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 200


@settings(max_examples=300, deadline=None)
@given(
    encoding=st.one_of(st.sampled_from(ENCODINGS), st.text(max_size=6)),
    height=st.integers(-2, 40),
    width=st.integers(-2, 40),
    step=st.integers(-4, 200),
    data=st.binary(max_size=4000),
    big=st.booleans(),
)
def test_random_messages_decode_or_raise_data_error(encoding, height, width, step, data, big):
    try:
        out = imaging.decode_image(encoding, height, width, step, data, big)
    except DataError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    dtype, ch = imaging.ENCODINGS[encoding]
    assert out.shape == ((height, width) if ch == 1 else (height, width, ch))
    assert out.dtype == dtype


def test_colorize_and_panel(tmp_path):
    import cv2

    from moadepth_core.evaluation import colorize

    depth = np.array([[0.0, 1.0, np.nan], [2.0, 3.0, np.inf]], np.float32)
    rgb = colorize.colorize_depth(depth, 1.0, 3.0)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    assert (rgb[0, 0] == 0).all() and (rgb[0, 2] == 0).all() and (rgb[1, 2] == 0).all()  # invalid black
    ends = cv2.applyColorMap(np.array([[0, 255]], np.uint8), cv2.COLORMAP_TURBO)
    turbo = cv2.cvtColor(ends, cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(rgb[0, 1], turbo[0, 0])  # vmin -> first colour, RGB order
    np.testing.assert_array_equal(rgb[1, 1], turbo[0, 1])
    err = colorize.colorize_error(np.array([[0.1, np.nan]], np.float32), 0.5)
    assert (err[0, 1] == 0).all() and err[0, 0].any()
    strip = colorize.panel([rgb, colorize.colorize_depth(depth)], ["a", "b"], height=20, gap=2)
    assert strip.shape[0] == 20 + 24 and strip.shape[1] == 30 + 2 + 30
    path = colorize.save_png(tmp_path / "new" / "p.png", strip)
    np.testing.assert_array_equal(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), strip)
    with pytest.raises(DataError, match="titles"):
        colorize.panel([rgb], ["a", "b"])
