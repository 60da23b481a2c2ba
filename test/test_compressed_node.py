"""The depth node on image_transport's compressed images over real DDS: JPEG and PNG in, a corrupt frame
followed by a good one (issue 21)."""

from __future__ import annotations

import numpy as np
import pytest

from depth_node_harness import (
    Client,
    Serving,
    camera_K,
    connected,
    depth_node,
    info_msg,
    rgb_frame,
    stamp_of,
    wait_for,
)
from moadepth_ros import messages
from moadepth_ros.dds_client import compressed_msg

pytest_plugins = ["depth_node_harness"]  # its fixture: ros

pytestmark = [pytest.mark.slow, pytest.mark.ros]

H, W = 48, 72


@pytest.fixture
def compressed_node(ros):
    node = depth_node(max_uncertainty=None, image_transport="compressed", log_period=60.0)
    client = Client(image_transport="compressed")
    with Serving(node, client):
        assert wait_for(lambda: connected(node, client), 10.0)
        yield node, client


def test_subscribes_to_image_compressed_and_answers_jpeg_and_png_with_their_headers(compressed_node):
    node, client = compressed_node
    assert node._io.topics[0] == "/image/compressed"
    rgb = rgb_frame(H, W, seed=1)
    K = camera_K(H, W)
    for i, codec in enumerate(("jpeg", "png")):
        stamp = 1_700_000_000_000_000_000 + i * 50_000_000
        client.publish(compressed_msg(rgb, stamp, frame_id=f"cam_{codec}", codec=codec), info_msg(K, H, W, stamp),
                       stamp)
        assert wait_for(lambda s=stamp: s in client.stamps("depth"), 30.0), codec
    depths = {m.header.frame_id: m for m in client.got("depth")}
    assert set(depths) == {"cam_jpeg", "cam_png"}
    for m in depths.values():
        assert (m.height, m.width, m.encoding) == (H, W, "32FC1")
        assert np.isfinite(messages.image_to_numpy(m)).mean() > 0.9
    assert wait_for(lambda: len(client.got("info")) >= 2, 10.0)
    assert {m.header.frame_id for m in client.got("info")} == {"cam_jpeg", "cam_png"}


def test_a_corrupt_frame_gets_a_warning_and_no_output_and_the_next_good_frame_is_answered(compressed_node):
    node, client = compressed_node
    rgb = rgb_frame(H, W, seed=2)
    K = camera_K(H, W)
    bad_stamp, good_stamp = 1_700_000_001_000_000_000, 1_700_000_001_100_000_000
    bad = compressed_msg(rgb, bad_stamp)
    bad.data = bad.data[: len(bad.data) // 2]  # truncated JPEG
    client.publish(bad, info_msg(K, H, W, bad_stamp), bad_stamp)
    assert wait_for(lambda: node.problems["image"] >= 1, 10.0)
    unknown = compressed_msg(rgb, bad_stamp + 1)
    unknown.format = "bgr8; theora compressed bgr8"
    client.publish(unknown, None, bad_stamp + 1)
    assert wait_for(lambda: node.problems["image"] >= 2, 10.0)
    client.publish(compressed_msg(rgb, good_stamp), info_msg(K, H, W, good_stamp), good_stamp)
    assert wait_for(lambda: good_stamp in client.stamps("depth"), 30.0)
    assert bad_stamp not in client.stamps("depth") and bad_stamp + 1 not in client.stamps("depth")
    lines = [line for kind, line in node.log_lines if kind == "image"]
    assert any("truncated" in line for line in lines) and any("theora" in line for line in lines)
    assert all("\n" not in line for line in lines)
    assert stamp_of(client.got("depth")[-1]) == good_stamp
