"""Middleware set-up for camera-sized messages: the shipped Fast DDS large-data profile.

Call :func:`use_large_data_profile` before ``rclpy.init``. It points Fast DDS at
``fastdds_large_data.xml``, through the variable this distro's Fast DDS reads
(``FASTDDS_DEFAULT_PROFILES_FILE`` on Kilted, ``FASTRTPS_DEFAULT_PROFILES_FILE`` on Jazzy;
:mod:`moadepth_ros.ros_compat`), (why and the measured gain are written in that file) unless the user
already chose: another RMW, their own profile file (``FASTDDS_DEFAULT_PROFILES_FILE`` or the
legacy ``FASTRTPS_DEFAULT_PROFILES_FILE``), a ``DEFAULT_FASTDDS_PROFILES.xml`` in the working
directory, or ``MOADEPTH_FASTDDS_PROFILE=0`` to keep Fast DDS's defaults. It is also skipped
when ``/dev/shm`` has less than :data:`MIN_SHM_FREE` free (a container's small default), where a
64 MiB segment per process could fail to allocate.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

from moadepth_ros import ros_compat

PROFILE_PATH = Path(__file__).with_name("fastdds_large_data.xml")
_USER_CHOICES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
_CWD_DEFAULTS = ("DEFAULT_FASTDDS_PROFILES.xml", "DEFAULT_FASTRTPS_PROFILES.xml")
OPT_OUT_ENV = "MOADEPTH_FASTDDS_PROFILE"
SHM_DIR = Path("/dev/shm")
MIN_SHM_FREE = 256 * 2**20  # room for several 64 MiB segments (node, camera, tools)


def shm_free_bytes(shm_dir: Path = SHM_DIR) -> int | None:
    """Free bytes in the shared-memory filesystem, None where there is none (not Linux)."""
    try:
        st = os.statvfs(shm_dir)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def large_data_profile_reason(env: MutableMapping[str, str] | None = None, cwd: Path | None = None,
                              shm_free: int | None = -1) -> str | None:
    """Why the profile must *not* be applied (a sentence), or None when it should be.

    ``shm_free``: free bytes in /dev/shm (-1: measure; None: no /dev/shm).
    """
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    if env.get(OPT_OUT_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return f"{OPT_OUT_ENV}={env[OPT_OUT_ENV]}"
    rmw = env.get("RMW_IMPLEMENTATION", "")
    if rmw and "fastrtps" not in rmw:
        return f"RMW_IMPLEMENTATION={rmw} is not Fast DDS"
    for name in _USER_CHOICES:
        if name in env:
            return f"{name} is already set"
    for name in _CWD_DEFAULTS:
        if (cwd / name).is_file():
            return f"{name} in the working directory is Fast DDS's own default"
    free = shm_free_bytes() if shm_free == -1 else shm_free
    if free is None:
        return f"no shared-memory filesystem at {SHM_DIR}"
    if free < MIN_SHM_FREE:
        return (f"{SHM_DIR} has {free / 2**20:.0f} MiB free, under {MIN_SHM_FREE // 2**20} MiB "
                f"(raise it, e.g. docker run --shm-size=256m)")
    return None


def use_large_data_profile(env: MutableMapping[str, str] | None = None, cwd: Path | None = None,
                           shm_free: int | None = -1) -> str | None:
    """Point Fast DDS's profile variable (:func:`ros_compat.fastdds_profile_env`) at the shipped
    profile unless the user chose; returns the path set."""
    env = os.environ if env is None else env
    if large_data_profile_reason(env, cwd, shm_free) is not None:
        return None
    env[ros_compat.fastdds_profile_env()] = str(PROFILE_PATH)
    return env[ros_compat.fastdds_profile_env()]
