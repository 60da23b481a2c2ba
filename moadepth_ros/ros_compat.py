"""What differs between the ROS 2 distributions moadepth runs on, in one place.

Jazzy's wheels carry rclpy 7.1 and Fast DDS 2.14, Kilted's rclpy 9.1 and Fast DDS 3.2. The rclpy
API moadepth uses (nodes, QoS and its events, graph queries, parameters and their callbacks,
lifecycle nodes, executors) behaves the same on both: every test marked ``ros`` runs on each. What
the code does hit is Fast DDS's side, in the environment and in /dev/shm:

- the variable naming a participant profile XML: Fast DDS 3 reads ``FASTDDS_DEFAULT_PROFILES_FILE``
  (and the old ``FASTRTPS_DEFAULT_PROFILES_FILE``, with a deprecation warning); Fast DDS 2 reads
  only ``FASTRTPS_DEFAULT_PROFILES_FILE`` and ignores the new name;
- the prefix of its shared-memory segments: ``fastdds_`` (3) and ``fastrtps_`` (2).

The distro is told by the rclpy that ``import rclpy`` will load (the first on ``sys.path``), read
from its metadata, so nothing here imports rclpy: the transport set-up runs before ``rclpy.init``.
"""

from __future__ import annotations

import functools
import importlib.metadata

# The first rclpy major version whose distro ships Fast DDS 3 (Kilted's 9; Jazzy has 7, Humble 3).
FASTDDS_3_FROM_RCLPY = 9


@functools.cache
def rclpy_major() -> int | None:
    """Major version of the rclpy first on ``sys.path`` (wheel or apt install), None when there is none."""
    try:
        return int(importlib.metadata.version("rclpy").split(".")[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None


def fastdds_major() -> int:
    """2 under Jazzy (and older), 3 under Kilted and newer, or when rclpy's version is unknown."""
    major = rclpy_major()
    return 2 if major is not None and major < FASTDDS_3_FROM_RCLPY else 3


def fastdds_profile_env() -> str:
    """The environment variable through which this Fast DDS loads a profile XML file."""
    return "FASTRTPS_DEFAULT_PROFILES_FILE" if fastdds_major() == 2 else "FASTDDS_DEFAULT_PROFILES_FILE"


def fastdds_shm_prefix() -> str:
    """The prefix of the shared-memory segments this Fast DDS creates in /dev/shm."""
    return "fastrtps_" if fastdds_major() == 2 else "fastdds_"
