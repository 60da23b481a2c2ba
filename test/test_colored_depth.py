"""``depth/colored`` over real DDS: rgb8 turbo over [min_depth, max_depth] with the input header, computed only
while someone subscribes (issue 21)."""

from __future__ import annotations

import numpy as np
import pytest
from rclpy.parameter import Parameter

from depth_node_harness import (
    Client,
    Spinner,
    camera_K,
    checkpoint_file,
    image_msg,
    info_msg,
    rgb_frame,
    stamp_of,
    wait_for,
)
from moadepth_core.evaluation.colorize import colorize_depth
from moadepth_ros import messages
from moadepth_ros.node.depth_node import DepthNode

pytestmark = [pytest.mark.slow, pytest.mark.ros]

H, W = 48, 72


@pytest.fixture(scope="module")
def ros():
    import rclpy

    rclpy.init()
    yield
    rclpy.try_shutdown()


def test_colored_depth_is_turbo_of_the_published_depth_and_only_computed_while_subscribed(ros):
    min_depth, max_depth = 0.0, 1000.0
    node = DepthNode(parameter_overrides=[
        Parameter("checkpoint", value=str(checkpoint_file())), Parameter("device", value="cpu"),
        Parameter("min_depth", value=min_depth), Parameter("max_depth", value=max_depth)])
    camera = Client(outputs=("depth",))
    viewer = None
    spin = Spinner(node, camera)
    try:
        assert wait_for(lambda: node.input_qos is not None and node.input_qos.decided
                        and node._subs[0].get_publisher_count() >= 1
                        and node.depth_pub.get_subscription_count() >= 1, 10.0)
        rgb, K = rgb_frame(H, W, seed=5), camera_K(H, W)
        first = 1_700_000_002_000_000_000
        camera.publish(image_msg(rgb, first, frame_id="cam_a"), info_msg(K, H, W, first), first)
        assert wait_for(lambda: first in camera.stamps("depth"), 30.0)
        assert node.colored_pub.get_subscription_count() == 0
        assert "stage_colored_out_p50_ms" not in node.stats.summary()  # nobody looked: not computed

        viewer = Client(name="moadepth_test_viewer", outputs=("colored",))
        spin.add(viewer)
        assert wait_for(lambda: node.colored_pub.get_subscription_count() >= 1, 10.0)
        second = first + 100_000_000
        camera.publish(image_msg(rgb, second, frame_id="cam_b"), info_msg(K, H, W, second), second)
        assert wait_for(lambda: second in viewer.stamps("colored") and second in camera.stamps("depth"), 30.0)
        colored = next(m for m in viewer.got("colored") if stamp_of(m) == second)
        depth = next(m for m in camera.got("depth") if stamp_of(m) == second)
        assert (colored.encoding, colored.height, colored.width) == ("rgb8", H, W)
        assert colored.header.frame_id == "cam_b" and colored.step == W * 3
        expected = colorize_depth(messages.image_to_numpy(depth), min_depth, max_depth, cmap="turbo")
        np.testing.assert_array_equal(messages.image_to_numpy(colored), expected)
        assert "stage_colored_out_p50_ms" in node.stats.summary()
    finally:
        spin.close()
        node.destroy_node()
        camera.destroy_node()
        if viewer is not None:
            viewer.destroy_node()
