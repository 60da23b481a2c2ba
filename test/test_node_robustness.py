"""Bad input, faults and a short soak: the node never crashes, never publishes for a bad frame,
and says what was wrong in one rate-limited line (issue 7)."""

from __future__ import annotations

import math
import time

import numpy as np
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import CameraInfo, Image

from depth_node_harness import (
    Client,
    Serving,
    camera_K,
    connected,
    depth_node,
    image_msg,
    info_msg,
    rgb_frame,
    wait_for,
)
from moadepth_core.errors import DataError
from moadepth_core.geometry.image_buffers import ENCODINGS
from moadepth_ros.node.depth_node import camera_from_info, frame_from_image

pytest_plugins = ["depth_node_harness"]  # its fixture: ros

pytestmark = pytest.mark.ros

H, W = 48, 72
COLOUR = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1", "8UC3")


# ------------------------------------------------------------------ property tests (no DDS)
@st.composite
def image_messages(draw):
    msg = Image()
    msg.encoding = draw(st.sampled_from([*ENCODINGS, "yuv422", "", "RGB8", "bayer_rggb8", "32FC3"]))
    msg.height = draw(st.one_of(st.integers(0, 12), st.integers(0, 2**32 - 1)))
    msg.width = draw(st.one_of(st.integers(0, 12), st.integers(0, 2**32 - 1)))
    msg.step = draw(st.one_of(st.integers(0, 64), st.integers(0, 2**32 - 1)))
    msg.is_bigendian = draw(st.integers(0, 1))
    msg.data = draw(st.binary(max_size=700))
    return msg


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image_messages())
def test_random_images_convert_or_raise_only_data_error(msg):
    try:
        rgb = frame_from_image(msg)
    except DataError as exc:
        text = str(exc)
        assert text and "\n" not in text
        return
    assert msg.encoding in COLOUR
    assert rgb.shape == (msg.height, msg.width, 3) and rgb.dtype == np.uint8 and rgb.flags.c_contiguous


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(0.0)), min_size=9, max_size=9),
       st.integers(0, 5000), st.integers(0, 5000))
def test_random_camera_infos_validate_or_raise_only_data_error(k, h, w):
    msg = CameraInfo(height=h, width=w, k=k)
    try:
        cam = camera_from_info(msg)
    except DataError:
        return
    assert cam.K[0, 0] > 0 and cam.K[1, 1] > 0 and np.isfinite(cam.K).all() and min(cam.hw) > 0


# ------------------------------------------------------------------ bad messages over DDS
@pytest.fixture(scope="module")
def node_and_client(ros):
    node = depth_node(device=None)
    client = Client()
    with Serving(node, client):
        assert wait_for(lambda: connected(node, client), 10.0)
        yield node, client


def _raw(encoding, h, w, step, data, stamp):
    msg = Image(encoding=encoding, height=h, width=w, step=step)
    msg.data = bytes(data)
    msg.header.frame_id = "cam_optical"
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 10**9)
    return msg


class _Clock:
    t = 100 * 10**9

    def next(self) -> int:
        self.t += 10**9
        return self.t


def _good(node, client, clock, K=None, info_hw=None, expect=("depth", "confidence")):
    """A good frame after a bad one: a barrier (its outputs prove the bad one was handled)."""
    s = clock.next()
    if K is not None:
        ih, iw = info_hw or (H, W)
        client.info_pub.publish(info_msg(K, ih, iw, s))
    client.image_pub.publish(image_msg(rgb_frame(H, W), s))
    assert wait_for(lambda: all(s in client.stamps(k) for k in expect), 30.0)
    assert node.wait_idle(10.0)
    return s


BAD_IMAGES = {
    "unsupported encoding": lambda s: _raw("yuv422_yuy2", H, W, 2 * W, b"\0" * (2 * W * H), s),
    "short data": lambda s: _raw("rgb8", H, W, 3 * W, b"\0" * 100, s),
    "step smaller than a row": lambda s: _raw("rgb8", H, W, W, b"\0" * (3 * W * H), s),
    "0x0 image": lambda s: _raw("rgb8", 0, 0, 0, b"", s),
    "absurd size, tiny data": lambda s: _raw("rgb8", 100_000, 100_000, 300_000, b"\0" * 16, s),
    "16-bit on the colour topic": lambda s: _raw("16UC1", H, W, 2 * W, b"\0" * (2 * W * H), s),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_bad_image_gives_one_line_and_no_output(node_and_client, case):
    node, client = node_and_client
    clock = _Clock()
    clock.t = node._last_stamp or clock.t
    client.clear()
    lines_before = len(node.log_lines)
    rejected_before = node.stats.rejected
    bad_stamp = clock.next()
    client.image_pub.publish(BAD_IMAGES[case](bad_stamp))
    assert wait_for(lambda: node.stats.rejected == rejected_before + 1, 10.0)
    good = _good(node, client, clock, camera_K(H, W), expect=("depth", "info", "points", "confidence"))
    new = list(node.log_lines)[lines_before:]
    image_lines = [line for kind, line in new if kind == "image"]
    assert len(image_lines) == 1, new
    assert image_lines[0].startswith("image rejected: ") and "\n" not in image_lines[0]
    for key in ("depth", "info", "points", "confidence"):
        assert bad_stamp not in client.stamps(key) and good in client.stamps(key)


@pytest.mark.slow
def test_repeated_bad_frames_are_rate_limited(node_and_client):
    node, client = node_and_client
    clock = _Clock()
    clock.t = node._last_stamp or clock.t
    before = len(node.log_lines)
    rej = node.stats.rejected
    for _ in range(5):  # spaced: the image reader keeps only the newest frame (moadepth_ros.node.intake)
        client.image_pub.publish(_raw("rgb8", H, W, 3 * W, b"\0" * 7, clock.next()))
        time.sleep(0.1)
    assert wait_for(lambda: node.stats.rejected == rej + 5, 10.0)
    new = [line for kind, line in list(node.log_lines)[before:] if kind == "image"]
    assert len(new) <= 1  # the short-data case above already logged within log_period


@pytest.mark.slow
def test_stamps_going_backwards_reset_and_carry_on(node_and_client):
    node, client = node_and_client
    clock = _Clock()
    clock.t = node._last_stamp or clock.t
    _good(node, client, clock, camera_K(H, W))
    client.clear()
    before = len(node.log_lines)
    back = clock.t - 50 * 10**9
    client.image_pub.publish(image_msg(rgb_frame(H, W), back))
    assert wait_for(lambda: any(k == "stamp" for k, _ in list(node.log_lines)[before:]), 10.0)
    clock.t = back
    good = _good(node, client, clock, camera_K(H, W), expect=("depth", "points"))
    assert back not in client.stamps("depth") and good in client.stamps("points")
    assert [k for k, _ in list(node.log_lines)[before:]].count("stamp") == 1


@pytest.mark.slow
@pytest.mark.parametrize("bad", ["nan", "zero"])
def test_bad_camera_info_is_ignored_with_one_line(node_and_client, bad):
    node, client = node_and_client
    clock = _Clock()
    clock.t = node._last_stamp or clock.t
    client.clear()
    K = camera_K(H, W)
    K[0, 0] = math.nan if bad == "nan" else 0.0
    before = node.problems["camera_info"]
    lines = len(node.log_lines)
    client.info_pub.publish(info_msg(K, H, W, clock.t + 1))
    assert wait_for(lambda: node.problems["camera_info"] == before + 1, 10.0)
    assert [k for k, _ in list(node.log_lines)[lines:]] in (["camera_info"], [])  # [] = rate-limited repeat
    assert not client.got("depth") and not client.got("info")
    # the next frame pairs with the last *valid* CameraInfo, never the broken one
    _good(node, client, clock, expect=("depth", "info"))
    published = np.asarray(client.got("info")[-1].k)
    assert np.isfinite(published).all() and published[0] > 0


@pytest.mark.slow
def test_camera_info_size_mismatch_scales_or_withholds_points(node_and_client):
    node, client = node_and_client
    clock = _Clock()
    clock.t = node._last_stamp or clock.t
    client.clear()
    K2 = camera_K(2 * H, 2 * W)  # same aspect, twice the size: scaled to the image
    s = _good(node, client, clock, K2, (2 * H, 2 * W), expect=("depth", "info", "points"))
    info = next(m for m in client.got("info") if m.header.stamp.sec == s // 10**9)
    assert (info.height, info.width) == (H, W)
    np.testing.assert_allclose(info.k[0], K2[0, 0] / 2)
    lines = len(node.log_lines)
    s2 = _good(node, client, clock, camera_K(H, H), (H, H))  # another aspect: depth only
    assert s2 not in client.stamps("points") and s2 not in client.stamps("info")
    assert [k for k, _ in list(node.log_lines)[lines:]] == ["camera_info_size"]


# ------------------------------------------------------------------ soak
@pytest.mark.slow
def test_short_soak_memory_flat_last_frame_answered(node_and_client):
    node, client = node_and_client
    clock = _Clock()
    clock.t = node._last_stamp or clock.t
    K = camera_K(H, W)
    proc = psutil.Process()
    frames = [rgb_frame(H, W, seed=i) for i in range(8)]
    start = dict(node.stats.summary())
    t0 = time.monotonic()
    rss_warm = None
    n = 200
    for i in range(n):
        s = clock.next()
        client.info_pub.publish(info_msg(K, H, W, s))
        client.image_pub.publish(image_msg(frames[i % 8], s))
        if i % 10 == 0:
            time.sleep(0.005)  # let the executor breathe: "max rate" of a Python publisher on 2 cores
        if i == 50:
            assert node.wait_idle(20.0)
            rss_warm = proc.memory_info().rss
        assert time.monotonic() - t0 < 60.0, "soak took too long"
    last = clock.t
    assert wait_for(lambda: last in client.stamps("depth"), 30.0), "the last frame was not answered"
    assert node.wait_idle(10.0)
    rss_end = proc.memory_info().rss
    end = node.stats.summary()
    d = {k: end[k] - start[k] for k in ("frames_in", "frames_out", "dropped", "rejected")}
    assert d["rejected"] == 0
    assert d["frames_out"] + d["dropped"] == d["frames_in"] <= n
    assert d["frames_out"] >= 2
    growth = (rss_end - rss_warm) / rss_warm
    print(f"soak: {n} frames sent in {time.monotonic() - t0:.1f}s, {d}, RSS {rss_warm / 2**20:.0f} -> "
          f"{rss_end / 2**20:.0f} MiB ({100 * growth:+.2f} %)")
    assert growth < 0.05
