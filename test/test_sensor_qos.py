"""sensor_qos: the node follows its camera's reliability by default (``auto``), re-matches a
best-effort publisher that appears later, and says in one warning (log and /diagnostics) which
parameter fixes a forced mismatch. Over real DDS, in process, with 48x72 frames (far below the
512 KiB where best effort needs the shipped Fast DDS profile)."""

from __future__ import annotations

import threading
import time

import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSPolicyKind, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image

from depth_node_harness import (
    Client,
    Spinner,
    camera_K,
    checkpoint_file,
    depth_node,
    image_msg,
    info_msg,
    input_matched,
    rgb_frame,
    wait_for,
)
from moadepth_ros import ros_compat
from moadepth_ros.node import input_qos
from moadepth_ros.node.depth_node import DepthNode

pytest_plugins = ["depth_node_harness"]  # its fixture: ros

pytestmark = pytest.mark.ros

RELIABLE, BEST_EFFORT = ReliabilityPolicy.RELIABLE, ReliabilityPolicy.BEST_EFFORT
H, W = 48, 72
K = camera_K(H, W)


# ------------------------------------------------------------------ the choice, without DDS
def test_auto_choice_follows_the_publishers():
    d = input_qos.choose({"/image": [], "/camera_info": []})
    assert d.reliability == BEST_EFFORT and not d.decided and "no publisher" in d.reason
    d = input_qos.choose({"/image": [RELIABLE], "/camera_info": [RELIABLE]})
    assert d.reliability == RELIABLE and d.decided and "all 2 publishers" in d.reason
    d = input_qos.choose({"/image": [RELIABLE, BEST_EFFORT], "/camera_info": [RELIABLE]})
    assert d.reliability == BEST_EFFORT and d.decided and "/image (best_effort)" in d.reason
    assert input_qos.forced("reliable").reliability == RELIABLE


def test_mismatch_text_names_topic_both_policies_and_the_parameter():
    ours = QoSProfile(depth=5, reliability=RELIABLE)
    peers = [QoSProfile(depth=5, reliability=BEST_EFFORT), QoSProfile(depth=5, reliability=RELIABLE)]
    theirs = input_qos.conflicting(QoSPolicyKind.RELIABILITY, ours, peers, we_read=True)
    assert theirs == ["best_effort"]
    text = input_qos.mismatch_text("/cam/image", QoSPolicyKind.RELIABILITY, ours, theirs, we_read=True,
                                   mode="reliable")
    assert "/cam/image" in text and "RELIABILITY reliable" in text and "best_effort" in text
    assert "sensor_qos:=auto" in text
    # an output: this node publishes volatile, a late-joiner subscriber asks transient_local
    out = QoSProfile(depth=3, reliability=RELIABLE, durability=DurabilityPolicy.VOLATILE)
    sub = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    theirs = input_qos.conflicting(QoSPolicyKind.DURABILITY, out, [sub], we_read=False)
    assert theirs == ["transient_local"]
    text = input_qos.mismatch_text("/depth/image", QoSPolicyKind.DURABILITY, out, theirs, we_read=False)
    assert "/depth/image" in text and "volatile" in text and "transient_local" in text and "subscriber" in text


# ------------------------------------------------------------------ over DDS
class Diagnostics(Node):
    """Records the node's DiagnosticStatus messages from /diagnostics."""

    def __init__(self) -> None:
        super().__init__("moadepth_qos_diag_listener")
        self.lock = threading.Lock()
        self.statuses: list[DiagnosticStatus] = []
        self.create_subscription(DiagnosticArray, "/diagnostics", self._cb, 10)

    def _cb(self, msg: DiagnosticArray) -> None:
        with self.lock:
            self.statuses += [s for s in msg.status if "depth estimation" in s.name]

    def any(self, pred) -> bool:
        with self.lock:
            return any(pred(s) for s in self.statuses)


def _values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


@pytest.fixture
def world(ros):
    """``make_node(**params)``, ``make_camera(reliability)``: all spun by one Spinner with a /diagnostics
    listener; torn down after the test."""
    diag = Diagnostics()
    spin = Spinner(diag)
    nodes: list[Node] = [diag]

    class World:
        diagnostics = diag

        @staticmethod
        def make_node(**params) -> DepthNode:
            node = depth_node(diagnostics_period=0.2, **params)
            nodes.append(node)
            spin.add(node)
            return node

        @staticmethod
        def make_camera(reliability, name: str = "moadepth_qos_camera") -> Client:
            client = Client(reliability=reliability, name=name, qos_depth=5)
            nodes.append(client)
            spin.add(client)
            return client

    yield World
    spin.close()
    for n in reversed(nodes):
        n.destroy_node()


def _send(camera: Client, stamp: int) -> None:
    camera.publish(image_msg(rgb_frame(H, W, seed=stamp % 7), stamp), info_msg(K, H, W, stamp), stamp)


def _logged(node: DepthNode, kind: str, *words: str) -> list[str]:
    return [line for k, line in list(node.log_lines) if k == kind and all(w in line for w in words)]


def test_best_effort_camera_with_default_parameters_gives_depth(world):
    node = world.make_node()  # before the camera: best effort until the first publisher appears
    assert node.get_parameter("sensor_qos").value == "auto"
    assert node.input_qos.reliability == BEST_EFFORT and not node.input_qos.decided
    camera = world.make_camera(BEST_EFFORT)
    # what a typical driver offers: qos_profile_sensor_data
    offered = camera.get_publishers_info_by_topic("image")[0].qos_profile
    assert (offered.reliability, offered.durability) == (  # the graph reports no history depth
        qos_profile_sensor_data.reliability, qos_profile_sensor_data.durability)
    assert wait_for(lambda: input_matched(node), 10.0)
    assert node.input_qos.reliability == BEST_EFFORT and "best_effort" in node.input_qos.reason
    assert wait_for(lambda: node.depth_pub.get_subscription_count() >= 1, 10.0)
    stamps = [10**9 * (i + 1) for i in range(5)]
    for s in stamps:
        _send(camera, s)
        time.sleep(0.2)  # a 5 Hz camera
    assert wait_for(lambda: stamps[-1] in camera.stamps("depth"), 30.0)
    assert len(camera.stamps("depth")) >= 4  # small frames: best effort on one machine loses ~none
    assert node.qos_rematches == 0 and not _logged(node, "qos_incompatible")


def test_reliable_camera_gives_depth_for_every_frame_at_5hz(world):
    camera = world.make_camera(RELIABLE)
    assert wait_for(lambda: camera.count_subscribers("image") == 0 and
                    len(camera.get_publishers_info_by_topic("image")) == 1, 5.0)
    node = world.make_node()  # the camera is already there: decided at start
    assert node.input_qos.decided and node.input_qos.reliability == RELIABLE, node.input_qos
    assert wait_for(lambda: input_matched(node) and camera.image_pub.get_subscription_count() == 1
                    and node.depth_pub.get_subscription_count() >= 1, 10.0)
    stamps = [10**9 * (i + 1) for i in range(10)]
    for s in stamps:
        _send(camera, s)
        time.sleep(0.2)
    assert wait_for(lambda: set(stamps) <= set(camera.stamps("depth")), 30.0), camera.stamps("depth")
    assert node.stats.frames_in == 10 and node.stats.dropped == 0


def test_node_before_a_reliable_camera_answers_every_frame_across_the_switch(world):
    """auto starts best effort, then re-subscribes reliable once the camera is seen: make-before-break
    keeps the best-effort subscription until the reliable one has matched, so no frame of a 5 Hz
    stream is lost in between, and a frame that arrives through both is answered once."""
    node = world.make_node()
    assert not node.input_qos.decided
    camera = world.make_camera(RELIABLE)
    # send as soon as the first (best-effort) subscription hears the camera: the switch falls inside
    assert wait_for(lambda: camera.image_pub.get_subscription_count() >= 1
                    and node.depth_pub.get_subscription_count() >= 1, 10.0)
    stamps = [10**9 * (i + 1) for i in range(15)]
    for s in stamps:
        _send(camera, s)
        time.sleep(0.2)
    assert node.input_qos.decided and node.input_qos.reliability == RELIABLE
    assert wait_for(lambda: set(stamps) <= set(camera.stamps("depth")), 30.0), sorted(camera.stamps("depth"))
    assert sorted(camera.stamps("depth")) == stamps  # each once: duplicates from the overlap dropped
    assert node.stats.frames_in == len(stamps)
    assert wait_for(lambda: len(node._io.subs) == 2 and not node._io._old, 10.0)  # the old ones are gone


def test_best_effort_publisher_after_a_reliable_one_is_matched_and_depth_continues(world):
    node = world.make_node()
    camera = world.make_camera(RELIABLE)
    assert wait_for(lambda: input_matched(node) and node.input_qos.reliability == RELIABLE, 10.0)
    _send(camera, 10**9)
    assert wait_for(lambda: 10**9 in camera.stamps("depth"), 30.0)
    late = world.make_camera(BEST_EFFORT, name="moadepth_qos_late_camera")
    assert wait_for(lambda: node.input_qos.reliability == BEST_EFFORT and input_matched(node, 2), 10.0)
    assert node.qos_rematches == 1
    assert _logged(node, "qos_rematched", "re-subscribed best effort", "best_effort")
    assert wait_for(lambda: world.diagnostics.any(
        lambda s: _values(s).get("qos_rematches") == "1" and "qos_rematched=1" in _values(s)["problems"]
        and _values(s)["input_reliability"].startswith("best_effort")), 10.0)
    assert wait_for(lambda: camera.image_pub.get_subscription_count() == 1
                    and late.image_pub.get_subscription_count() == 1, 10.0)
    _send(late, 2 * 10**9)
    assert wait_for(lambda: 2 * 10**9 in late.stamps("depth"), 30.0)
    _send(camera, 3 * 10**9)  # the reliable camera is still answered, with the same pairing
    assert wait_for(lambda: 3 * 10**9 in camera.stamps("depth"), 30.0)
    info = [m for m in camera.got("info") if m.header.stamp.sec == 3]
    assert info and list(info[0].k) == pytest.approx(list(K.ravel()))
    assert not _logged(node, "qos_incompatible")


def test_forced_reliable_against_a_best_effort_camera_names_the_parameter(world):
    node = world.make_node(sensor_qos="reliable")
    assert node.input_qos.reliability == RELIABLE and node.input_qos.decided
    camera = world.make_camera(BEST_EFFORT)
    image = node.resolve_topic_name("image")
    assert wait_for(lambda: _logged(node, "qos_incompatible", image, "sensor_qos", "reliable", "best_effort"),
                    10.0), list(node.log_lines)
    line = _logged(node, "qos_incompatible", image)[0]
    assert "RELIABILITY" in line and "sensor_qos:=auto" in line
    assert wait_for(lambda: world.diagnostics.any(
        lambda s: s.level == DiagnosticStatus.WARN and "sensor_qos" in s.message and image in s.message), 10.0)
    assert node.input_qos.reliability == RELIABLE and node.qos_rematches == 0  # forced: never changed
    # the camera goes: the WARN goes with it
    camera.destroy_node()
    assert wait_for(lambda: world.diagnostics.any(lambda s: s.level == DiagnosticStatus.OK
                                                  and s.message == "running"), 10.0)


def test_an_output_subscriber_with_incompatible_durability_gets_one_warning(world):
    node = world.make_node()
    reader = world.make_camera(RELIABLE, name="moadepth_qos_reader")
    reader.create_subscription(Image, "depth/image", lambda _m: None,
                               QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    topic = node.depth_pub.topic_name
    assert wait_for(lambda: _logged(node, "qos_incompatible", topic, "volatile", "transient_local"), 10.0), \
        list(node.log_lines)
    assert wait_for(lambda: world.diagnostics.any(
        lambda s: s.level == DiagnosticStatus.WARN and topic in s.message), 10.0)


def test_a_silent_best_effort_input_names_the_fast_dds_profile(world, monkeypatch):
    monkeypatch.setattr(input_qos, "SILENT_S", 1.0)
    node = world.make_node()
    world.make_camera(BEST_EFFORT)  # present, never publishes: what a large frame without the profile looks like
    assert wait_for(lambda: _logged(node, "qos_silent", ros_compat.fastdds_profile_env(), "512 KiB"), 10.0), \
        list(node.log_lines)
    time.sleep(1.5)  # one warning per silence, not one per period
    assert len(_logged(node, "qos_silent")) == 1


def test_auto_reads_the_remapped_topic(world, ros):
    """``-r image:=/front/image_raw``: auto looks at the publishers of the remapped name."""
    node = DepthNode(cli_args=["--ros-args", "-r", "image:=/front/image_raw"], parameter_overrides=[
        Parameter("checkpoint", value=str(checkpoint_file())), Parameter("device", value="cpu")])
    driver = Node("moadepth_qos_front_driver")
    driver.create_publisher(Image, "/front/image_raw", QoSProfile(depth=5, reliability=BEST_EFFORT))
    spin = Spinner(node, driver)
    try:
        assert wait_for(lambda: node.input_qos.decided and node._subs[0].get_publisher_count() == 1, 10.0)
        assert node._subs[0].topic_name == "/front/image_raw"
        assert node.input_qos.reliability == BEST_EFFORT and "/front/image_raw" in node.input_qos.reason
    finally:
        spin.close()
        node.destroy_node()
        driver.destroy_node()
