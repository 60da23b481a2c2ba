"""Middleware set-up for camera-sized messages: the shipped Fast DDS large-data profile.

Call :func:`use_large_data_profile` before ``rclpy.init``. It points Fast DDS at
``fastdds_large_data.xml`` (why and the measured gain are written in that file) unless the user
already chose: another RMW, their own profile file (``FASTDDS_DEFAULT_PROFILES_FILE`` or the
legacy ``FASTRTPS_DEFAULT_PROFILES_FILE``), a ``DEFAULT_FASTDDS_PROFILES.xml`` in the working
directory, or ``MOADEPTH_FASTDDS_PROFILE=0`` to keep Fast DDS's defaults.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

PROFILE_PATH = Path(__file__).with_name("fastdds_large_data.xml")
PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"
_USER_CHOICES = (PROFILE_ENV, "FASTRTPS_DEFAULT_PROFILES_FILE")
_CWD_DEFAULTS = ("DEFAULT_FASTDDS_PROFILES.xml", "DEFAULT_FASTRTPS_PROFILES.xml")
OPT_OUT_ENV = "MOADEPTH_FASTDDS_PROFILE"


def large_data_profile_reason(env: MutableMapping[str, str] | None = None, cwd: Path | None = None) -> str | None:
    """Why the profile must *not* be applied (a sentence), or None when it should be."""
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
    return None


def use_large_data_profile(env: MutableMapping[str, str] | None = None, cwd: Path | None = None) -> str | None:
    """Set ``FASTDDS_DEFAULT_PROFILES_FILE`` to the shipped profile unless the user chose; returns the path set."""
    env = os.environ if env is None else env
    if large_data_profile_reason(env, cwd) is not None:
        return None
    env[PROFILE_ENV] = str(PROFILE_PATH)
    return env[PROFILE_ENV]
