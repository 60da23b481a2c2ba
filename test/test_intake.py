"""The node's image intake (issue 24): no image is taken from DDS while the network runs, the newest
one is taken when it ends, and the frames skipped meanwhile are still counted (over real DDS)."""

from __future__ import annotations

import time

import pytest

from depth_node_harness import camera_K, image_msg, info_msg, rgb_frame, wait_for
from moadepth_ros.node.intake import MAX_SKIPPED, arrival_time, frames_since
from moadepth_ros.node.pacing import FramePacer

pytest_plugins = ["depth_node_harness"]  # its fixtures: ros, running
pytestmark = pytest.mark.ros


def test_frames_since_counts_the_camera_frames_between_two_taken_images():
    assert frames_since(None, {"publication_sequence_number": 7}) == (1, 7)  # the first one stands for itself
    assert frames_since(7, {"publication_sequence_number": 8}) == (1, 8)
    assert frames_since(8, {"publication_sequence_number": 12}) == (4, 12)  # 9, 10, 11 skipped
    # no message info, or an rmw that leaves the number out: each image counts once
    assert frames_since(8, None) == (1, None)
    assert frames_since(8, {"publication_sequence_number": None}) == (1, None)
    # a restarted camera or another publisher: not a count of skipped frames
    assert frames_since(12, {"publication_sequence_number": 3}) == (1, 3)
    assert frames_since(12, {"publication_sequence_number": 13 + MAX_SKIPPED}) == (1, 13 + MAX_SKIPPED)


def test_arrival_time_is_the_dds_reception_on_the_monotonic_clock():
    wall = 1_800_000_000_000_000_000
    info = {"received_timestamp": wall - 40_000_000}  # received 40 ms before "now"
    assert abs(arrival_time(info, 100.0, now_wall_ns=wall) - 99.96) < 1e-9
    assert arrival_time(None, 100.0, now_wall_ns=wall) == 100.0
    assert arrival_time({"received_timestamp": 0}, 100.0, now_wall_ns=wall) == 100.0
    assert arrival_time({"received_timestamp": wall + 5_000_000}, 100.0, now_wall_ns=wall) == 100.0  # future
    assert arrival_time({"received_timestamp": wall - 5_000_000_000}, 100.0, now_wall_ns=wall) == 100.0  # stale


def test_pacer_learns_the_camera_period_from_every_third_frame():
    p = FramePacer()
    for i in range(8):
        p.arrived(i * 0.1, frames=3)  # one frame in three taken from a 30 Hz camera
    assert abs(p.period() - 0.1 / 3) < 1e-9


@pytest.mark.slow  # starts a node
def test_no_image_is_taken_while_the_network_runs_then_the_newest_is(running):
    node, client = running()
    cam = node.camera()
    h, w = 48, 64
    img, info = image_msg(rgb_frame(h, w), 0), info_msg(camera_K(h, w), h, w, 0)
    t0 = time.time_ns()
    client.publish(img, info, t0)
    assert wait_for(lambda: cam.io.images_taken == 1 and node.wait_idle(0.0), 10.0)
    with node._intake.closed():  # as during a forward
        for i in range(1, 6):
            client.publish(img, info, t0 + i * 1_000_000)
            time.sleep(0.05)
        time.sleep(0.3)
        assert cam.io.images_taken == 1  # five frames sent, none taken
    assert wait_for(lambda: cam.io.images_taken == 2, 5.0)  # the gate opened: one image taken...
    assert cam.last_stamp == t0 + 5_000_000  # ...the newest (the reader keeps one)
    time.sleep(0.3)
    assert cam.io.images_taken == 2
    assert wait_for(lambda: node.wait_idle(0.0) and cam.stats.frames_out == 2, 10.0)
    s = cam.stats
    # all six counted in; the four never taken are dropped; what came in went out or was dropped
    assert (s.frames_in, s.dropped, s.frames_out) == (6, 4, 2)
    assert s.frames_in == s.frames_out + s.dropped + s.rejected + s.skipped
