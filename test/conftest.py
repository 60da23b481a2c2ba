"""Session-wide test set-up.

Every ROS process a test starts (in this process or as a subprocess, which
inherits ``os.environ``) must keep DDS discovery on this machine and use a
domain of its own, so a bare ``pytest`` run is as safe as ``make test``.
"""

from __future__ import annotations

import atexit
import importlib.metadata
import importlib.util
import os
import random
import re
import shutil
import sys
import tempfile

import pytest

# The node tests' shared helpers and fixtures (their modules load it with pytest_plugins): rewrite its asserts.
pytest.register_assert_rewrite("depth_node_harness")

# Set at import time, before any test module can import rclpy.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.pop("ROS_STATIC_PEERS", None)
if not os.environ.get("ROS_DOMAIN_ID"):
    os.environ["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 200))
# The product's transport default (depth_node applies it too), where /dev/shm has room for it;
# tests of the choice itself pass their own env.
if importlib.util.find_spec("moadepth_ros") is not None:
    from moadepth_ros import ros_compat
    from moadepth_ros.node import transport

    if (transport.shm_free_bytes() or 0) >= transport.MIN_SHM_FREE:
        # FASTRTPS_DEFAULT_PROFILES_FILE under Jazzy's Fast DDS 2, FASTDDS_... under Kilted's 3
        os.environ[ros_compat.fastdds_profile_env()] = str(transport.PROFILE_PATH)

# Exported ONNX graphs go to one folder per test session, not the user's ~/.cache: tests that run
# the same checkpoint through backend onnxruntime export (and quantise) it once.
if "MOADEPTH_ONNX_CACHE" not in os.environ:
    _onnx_cache = tempfile.mkdtemp(prefix="moadepth-test-onnx-")
    atexit.register(shutil.rmtree, _onnx_cache, True)
    os.environ["MOADEPTH_ONNX_CACHE"] = _onnx_cache

# Keep the 2-core CI machine from oversubscribing; a no-op where torch is absent.
if importlib.util.find_spec("torch") is not None:
    import torch

    torch.set_num_threads(2)


def _ros_wheels() -> str:
    """Which ROS 2 distro's rclpy this venv runs, read from the wheels' metadata (rclpy not imported)."""
    prefix = os.path.realpath(sys.prefix) + os.sep
    for dist in importlib.metadata.distributions():
        m = re.fullmatch(r"ros[-_]([a-z]+)[-_]rclpy", (dist.metadata["Name"] or "").lower())
        if m and os.path.realpath(dist.locate_file("")).startswith(prefix):
            return f"ROS 2 {m.group(1)} wheels (rclpy {dist.version}) in {sys.prefix}"
    return f"no ROS 2 rclpy wheel in {sys.prefix}"


def pytest_report_header(config) -> list[str]:
    return [
        f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']} "
        f"ROS_AUTOMATIC_DISCOVERY_RANGE={os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']}",
        _ros_wheels(),
    ]
