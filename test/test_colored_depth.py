"""``depth/colored`` over real DDS: rgb8 turbo over [min_depth, max_depth] with the input header, computed only
while someone subscribes (issue 21)."""

from __future__ import annotations

import numpy as np
import pytest

from depth_node_harness import (
    Client,
    Serving,
    camera_K,
    connected,
    depth_node,
    image_msg,
    info_msg,
    rgb_frame,
    stamp_of,
    wait_for,
)
from moadepth_core.evaluation.colorize import colorize_depth
from moadepth_ros import messages

pytest_plugins = ["depth_node_harness"]  # its fixture: ros

pytestmark = [pytest.mark.slow, pytest.mark.ros]

H, W = 48, 72


def test_colored_depth_is_turbo_of_the_published_depth_and_only_computed_while_subscribed(ros):
    min_depth, max_depth = 0.0, 1000.0
    node = depth_node(min_depth=min_depth, max_depth=max_depth, max_uncertainty=None)
    camera = Client(outputs=("depth",))
    with Serving(node, camera) as serving:
        assert wait_for(lambda: connected(node, camera), 10.0)
        rgb, K = rgb_frame(H, W, seed=5), camera_K(H, W)
        first = 1_700_000_002_000_000_000
        camera.publish(image_msg(rgb, first, frame_id="cam_a"), info_msg(K, H, W, first), first)
        assert wait_for(lambda: first in camera.stamps("depth"), 30.0)
        assert node.colored_pub.get_subscription_count() == 0
        assert "stage_colored_out_p50_ms" not in node.stats.summary()  # nobody looked: not computed

        viewer = serving.add(Client(name="moadepth_test_viewer", outputs=("colored",)))
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
