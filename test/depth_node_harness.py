"""Shared helpers for the depth node tests: a real checkpoint file, test frames, and the DDS client.

The client (``Client``, ``Spinner``, ``wait_for``, message builders) is
``moadepth_ros.dds_client``, shared with the benchmark; its names are re-exported here.
Everything runs over real DDS (conftest.py keeps discovery on localhost with a random domain).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import numpy as np
import rclpy

from moadepth_core import geometry
from moadepth_ros.dds_client import Client, Spinner, image_msg, info_msg, stamp_of, wait_for

__all__ = ["MODEL_HW", "TRAIN_FOCAL_PX", "Client", "Spinner", "camera_K", "checkpoint_file", "image_msg",
           "info_msg", "rgb_frame", "ros_context", "stamp_of", "wait_for"]

MODEL_HW = (64, 96)
TRAIN_FOCAL_PX = 80.0
_CKPT: list[Path] = []


def checkpoint_file() -> Path:
    """A real checkpoint of a random 64x96 network, written once per test process."""
    if not _CKPT:
        import model_cache
        from moadepth_core.model.checkpoint import save_checkpoint

        folder = Path(tempfile.mkdtemp(prefix="moadepth-node-test-"))
        atexit.register(shutil.rmtree, folder, True)
        path = folder / "random.pt"
        save_checkpoint(path, model_cache.shared_model(MODEL_HW), train_focal_px=TRAIN_FOCAL_PX)
        _CKPT.append(path)
    return _CKPT[0]


def camera_K(h: int, w: int) -> np.ndarray:
    return geometry.intrinsics_matrix(0.9 * w, 0.9 * w, (w - 1) / 2.0 + 1.5, (h - 1) / 2.0 - 2.0)


def rgb_frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


def ros_context():
    """(init, shutdown) for a module-scoped rclpy context."""
    rclpy.init()
    return rclpy.try_shutdown
