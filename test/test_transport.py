"""The shipped Fast DDS large-data profile: when it is applied, and that Fast DDS really uses it."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from moadepth_ros import ros_compat
from moadepth_ros.node import transport

pytestmark = pytest.mark.ros

SHM = Path("/dev/shm")


def test_profile_applied_on_a_clean_environment(tmp_path):
    env: dict[str, str] = {}
    assert transport.use_large_data_profile(env, cwd=tmp_path, shm_free=2**30) == str(transport.PROFILE_PATH)
    assert env == {ros_compat.fastdds_profile_env(): str(transport.PROFILE_PATH)}


@pytest.mark.parametrize("env, why", [
    ({"FASTDDS_DEFAULT_PROFILES_FILE": "/etc/mine.xml"}, "already set"),
    ({"FASTRTPS_DEFAULT_PROFILES_FILE": "/etc/mine.xml"}, "already set"),
    ({"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}, "not Fast DDS"),
    ({"MOADEPTH_FASTDDS_PROFILE": "0"}, "MOADEPTH_FASTDDS_PROFILE=0"),
])
def test_a_users_own_choice_is_left_alone(tmp_path, env, why):
    before = dict(env)
    assert transport.use_large_data_profile(env, cwd=tmp_path) is None
    assert env == before
    assert why in transport.large_data_profile_reason(env, cwd=tmp_path)


@pytest.mark.parametrize("free, why", [(32 * 2**20, "32 MiB free"), (None, "no shared-memory")])
def test_a_small_or_missing_dev_shm_keeps_fast_dds_defaults(tmp_path, free, why):
    env: dict[str, str] = {}
    assert transport.use_large_data_profile(env, cwd=tmp_path, shm_free=free) is None and env == {}
    assert why in transport.large_data_profile_reason(env, cwd=tmp_path, shm_free=free)
    assert transport.use_large_data_profile(env, cwd=tmp_path, shm_free=2**30) is not None


def test_fast_dds_default_file_in_the_working_directory_wins(tmp_path):
    (tmp_path / "DEFAULT_FASTDDS_PROFILES.xml").write_text("<dds/>")
    env: dict[str, str] = {}
    assert transport.use_large_data_profile(env, cwd=tmp_path) is None and env == {}


def test_rmw_fastrtps_variants_still_get_the_profile(tmp_path):
    env = {"RMW_IMPLEMENTATION": "rmw_fastrtps_dynamic_cpp"}
    assert transport.use_large_data_profile(env, cwd=tmp_path, shm_free=2**30) is not None


def test_profile_is_a_default_participant_profile_with_a_large_shm_segment():
    root = ET.parse(transport.PROFILE_PATH).getroot()
    ns = {"d": "http://www.eprosima.com"}
    shm = [t for t in root.iterfind(".//d:transport_descriptor", ns) if t.findtext("d:type", namespaces=ns) == "SHM"]
    assert len(shm) == 1 and int(shm[0].findtext("d:segment_size", namespaces=ns)) >= 8 * 2**20
    part = root.find(".//d:participant", ns)
    assert part.get("is_default_profile") == "true"
    used = [t.text for t in part.iterfind(".//d:userTransports/d:transport_id", ns)]
    assert shm[0].findtext("d:transport_id", namespaces=ns) in used and len(used) == 2  # SHM + UDPv4


CHILD = """
import os, sys, time
from moadepth_ros.node import transport
print(transport.use_large_data_profile(), flush=True)
import rclpy
rclpy.init()
node = rclpy.create_node("moadepth_transport_probe")
print("up", flush=True)
sys.stdin.readline()  # hold the participant until the test has looked
"""


ROOM = (transport.shm_free_bytes() or 0) >= transport.MIN_SHM_FREE


@pytest.mark.skipif(not ROOM, reason="/dev/shm missing or too small for the profile here")
def test_fast_dds_creates_the_large_shared_memory_segment(tmp_path):
    """A participant started the way depth_node starts gets a >= 64 MiB segment (default: 512 KiB)."""
    env = {k: v for k, v in os.environ.items() if k not in (*transport._USER_CHOICES, "MOADEPTH_FASTDDS_PROFILE")}
    before = {p.name for p in SHM.iterdir()}
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        assert proc.stdout.readline().strip() == str(transport.PROFILE_PATH)
        assert proc.stdout.readline().strip() == "up"
        new = {p.name: p.stat().st_size for p in SHM.iterdir() if p.name not in before}
    finally:
        _, err = proc.communicate("\n", timeout=30)
    assert proc.returncode == 0, err
    assert "XMLPARSER Error" not in err, err
    segments = [size for name, size in new.items() if name.startswith(ros_compat.fastdds_shm_prefix()) and not name.endswith("_el")]
    assert max(segments, default=0) >= 64 * 2**20, new


PUBLISHER = """
import array, sys, time
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
rclpy.init()
node = rclpy.create_node("moadepth_best_effort_camera")
pub = node.create_publisher(Image, "/moadepth_test/be_image", QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT))
end = time.monotonic() + 20
while pub.get_subscription_count() < 1 and time.monotonic() < end:
    time.sleep(0.05)
time.sleep(0.5)
msg = Image(height=480, width=640, encoding="rgb8", step=1920)
msg.data = array.array("B", bytes(640 * 480 * 3))
for i in range(int(sys.argv[1])):
    msg.header.frame_id = str(i)
    pub.publish(msg)
    time.sleep(0.1)
time.sleep(0.5)
"""


@pytest.mark.skipif(not ROOM, reason="/dev/shm missing or too small for the profile here")
def test_best_effort_640x480_images_arrive_between_processes_with_the_profile():
    """Fast DDS defaults drop best-effort samples over its 512 KiB shared-memory segment (measured:
    0 of 40 900 KiB images); with the shipped profile a best-effort reader gets them all."""
    import time

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    assert os.environ.get(ros_compat.fastdds_profile_env()) == str(transport.PROFILE_PATH)  # conftest sets it
    n = 20
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        node = rclpy.create_node("moadepth_best_effort_reader", context=ctx)
        got: list[str] = []
        node.create_subscription(Image, "/moadepth_test/be_image", lambda m: got.append(m.header.frame_id),
                                 QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT))
        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(node)
        proc = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(n)], env=dict(os.environ))
        try:
            end = time.monotonic() + 40
            while proc.poll() is None and len(got) < n and time.monotonic() < end:
                executor.spin_once(timeout_sec=0.05)
        finally:
            proc.wait(timeout=30)
        assert proc.returncode == 0
        assert len(set(got)) >= n - 1, f"{len(set(got))} of {n} best-effort 900 KiB images arrived"
    finally:
        rclpy.try_shutdown(context=ctx)
