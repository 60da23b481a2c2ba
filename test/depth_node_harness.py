"""Shared helpers for the depth node tests: a real checkpoint file, test frames, and a DDS client.

Everything runs over real DDS (conftest.py keeps discovery on localhost with a random domain).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from moadepth_core import geometry
from moadepth_ros import messages

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


def image_msg(rgb: np.ndarray, stamp_ns: int, frame_id: str = "cam_optical", encoding: str = "rgb8") -> Image:
    msg = messages.numpy_to_image(rgb, encoding)
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return msg


def info_msg(K: np.ndarray, h: int, w: int, stamp_ns: int, frame_id: str = "cam_optical") -> CameraInfo:
    msg = messages.make_camera_info(None, K, h, w)
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return msg


def stamp_of(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def wait_for(cond: Callable[[], bool], timeout: float, period: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(period)
    return cond()


class Client(Node):
    """Publishes images/camera_info like a camera driver and records every output by stamp."""

    def __init__(self, prefix: str = "", reliability=ReliabilityPolicy.RELIABLE) -> None:
        super().__init__("moadepth_test_client")
        qos = QoSProfile(depth=10, reliability=reliability)
        p = prefix.rstrip("/")
        self.image_pub = self.create_publisher(Image, f"{p}/image" if p else "image", qos)
        self.info_pub = self.create_publisher(CameraInfo, f"{p}/camera_info" if p else "camera_info", qos)
        self.lock = threading.Lock()
        self.received: dict[str, list] = {"depth": [], "info": [], "points": [], "confidence": []}
        out_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        for key, typ, topic in (("depth", Image, "depth/image"), ("info", CameraInfo, "depth/camera_info"),
                                ("points", PointCloud2, "points"), ("confidence", Image, "depth/confidence")):
            self.create_subscription(typ, f"{p}/{topic}" if p else topic, self._make_cb(key), out_qos)

    def _make_cb(self, key: str):
        def cb(msg) -> None:
            with self.lock:
                self.received[key].append(msg)
        return cb

    def got(self, key: str) -> list:
        with self.lock:
            return list(self.received[key])

    def stamps(self, key: str) -> list[int]:
        return [stamp_of(m) for m in self.got(key)]

    def clear(self) -> None:
        with self.lock:
            for v in self.received.values():
                v.clear()


class Spinner:
    """A SingleThreadedExecutor (what the node's ``main`` spins) on the given nodes until ``close``.

    Not a MultiThreadedExecutor: its ``shutdown`` destroys the wake-up guard condition before the pool
    has run the callbacks already handed to it, so a late one fails in its ``gc.trigger()`` and rclpy
    prints "exception was never retrieved" whenever that task is garbage-collected: in a later test.
    Here a late failure is raised in the spin thread, where ``_spin`` ends on it."""

    def __init__(self, *nodes: Node) -> None:
        self.executor = SingleThreadedExecutor()
        for n in nodes:
            self.executor.add_node(n)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - executor shutdown races are not test failures
            pass

    def add(self, node: Node) -> None:
        self.executor.add_node(node)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=5.0)
        self.thread.join(timeout=5.0)


def ros_context():
    """(init, shutdown) for a module-scoped rclpy context."""
    rclpy.init()
    return rclpy.try_shutdown
