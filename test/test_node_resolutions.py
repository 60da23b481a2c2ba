"""HD cameras (issue 24), over real DDS in process: ``point_stride: auto`` gives the cloud size
docs/ROS.md documents, a stride the user sets is kept, and a camera whose resolution changes
mid-stream keeps getting depth, intrinsics and points at its new size."""

from __future__ import annotations

import numpy as np
import pytest
from rclpy.parameter import Parameter

from depth_node_harness import Client, camera_K, image_msg, info_msg, rgb_frame, wait_for

pytest_plugins = ["depth_node_harness"]  # its fixtures: ros, running

pytestmark = [pytest.mark.slow, pytest.mark.ros]


def _send(client: Client, h: int, w: int, stamp: int) -> None:
    client.info_pub.publish(info_msg(camera_K(h, w), h, w, stamp))
    client.image_pub.publish(image_msg(rgb_frame(h, w, seed=stamp % 5), stamp))


def _answer(client: Client, stamp: int):
    assert wait_for(lambda: all(stamp in client.stamps(k) for k in ("depth", "info", "points")), 60.0)
    return tuple(next(m for m in client.got(k) if m.header.stamp.sec * 10**9 + m.header.stamp.nanosec == stamp)
                 for k in ("depth", "info", "points"))


def test_auto_stride_gives_the_documented_cloud_at_720p_and_a_set_stride_is_kept(running):
    # the default network input, 224x224: docs/ROS.md says 1280x720 -> stride 3, a 427x240 cloud
    node, client = running(input_height=224, input_width=224)
    assert node.get_parameter("point_stride").value == "auto"
    _send(client, 720, 1280, 10**9)
    depth, info, cloud = _answer(client, 10**9)
    assert (depth.height, depth.width) == (720, 1280) and (info.height, info.width) == (720, 1280)
    assert (cloud.height, cloud.width) == (240, 427)
    # a number forces it, at run time (an integer, as -p point_stride:=2 and YAML give it)
    assert node.set_parameters([Parameter("point_stride", value=2)])[0].successful
    _send(client, 720, 1280, 2 * 10**9)
    _, _, cloud = _answer(client, 2 * 10**9)
    assert (cloud.height, cloud.width) == (360, 640)
    res = node.set_parameters([Parameter("point_stride", value="often")])
    assert not res[0].successful and "auto or an integer" in res[0].reason
    assert not node.set_parameters([Parameter("point_stride", value=0)])[0].successful


def test_a_stride_given_at_start_is_kept(running):
    node, client = running(point_stride=1)
    _send(client, 720, 1280, 10**9)
    depth, _, cloud = _answer(client, 10**9)
    assert (cloud.height, cloud.width) == (depth.height, depth.width) == (720, 1280)


def test_a_resolution_change_mid_stream_is_followed(running):
    node, client = running()  # test network 64x96: auto stride round(long side / 192)
    sizes = [(480, 640), (1080, 1920), (240, 320), (720, 1280), (480, 640)]
    for i, (h, w) in enumerate(sizes):
        stamp = (i + 1) * 10**9
        _send(client, h, w, stamp)
        depth, info, cloud = _answer(client, stamp)
        assert (depth.height, depth.width) == (h, w) and (info.height, info.width) == (h, w)
        np.testing.assert_allclose(np.asarray(info.k).reshape(3, 3), camera_K(h, w))
        stride = max(1, int(max(h, w) / (2 * 96) + 0.5))
        assert (cloud.height, cloud.width) == (-(-h // stride), -(-w // stride)), (h, w, stride)
        assert cloud.row_step * cloud.height == len(cloud.data)
    assert node.stats.frames_out == len(sizes) and not node.problems.get("camera_info_size")
