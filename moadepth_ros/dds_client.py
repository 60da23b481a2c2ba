"""A DDS client of ``depth_node`` for the tests and the benchmark (never used by the node itself).

:class:`Client` plays the camera driver (publishes Image and CameraInfo) and records every output
of the node (depth, its CameraInfo, points, confidence) with its header stamp and the time it
arrived; :class:`Spinner` spins it (and, in-process tests, the node) in a thread. One client for
``test/depth_node_harness.py`` and ``scripts/bench``, so both see the node the same way.
Times are ``time.monotonic`` (CLOCK_MONOTONIC), the clock of the node's timing log.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

import numpy as np
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from moadepth_ros import messages

OUTPUTS = {  # key -> (type, topic relative to the node's namespace)
    "depth": (Image, "depth/image"),
    "info": (CameraInfo, "depth/camera_info"),
    "points": (PointCloud2, "points"),
    "confidence": (Image, "depth/confidence"),
    "colored": (Image, "depth/colored"),
}
#: What a client subscribes to unless told: not ``colored``, which the node computes only while read.
DEFAULT_OUTPUTS = ("depth", "info", "points", "confidence")


def stamp_of(msg) -> int:
    """A message's header stamp in nanoseconds."""
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def image_msg(rgb: np.ndarray, stamp_ns: int, frame_id: str = "cam_optical", encoding: str = "rgb8") -> Image:
    msg = messages.numpy_to_image(rgb, encoding)
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return msg


def compressed_msg(rgb: np.ndarray, stamp_ns: int, frame_id: str = "cam_optical", codec: str = "jpeg",
                   quality: int = 95) -> CompressedImage:
    """sensor_msgs/CompressedImage as image_transport's compressed plugin publishes it (JPEG or PNG)."""
    msg = messages.compressed_image_msg(rgb, codec, quality=quality)
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return msg


def info_msg(K: np.ndarray, h: int, w: int, stamp_ns: int, frame_id: str = "cam_optical") -> CameraInfo:
    msg = messages.make_camera_info(None, K, h, w)
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return msg


def wait_for(cond: Callable[[], bool], timeout: float, period: float = 0.02) -> bool:
    """Poll ``cond`` until it holds or ``timeout`` seconds pass; its last value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(period)
    return cond()


class Client(Node):
    """Publishes images/camera_info like a camera driver and records every output by stamp.

    ``image_transport="compressed"`` publishes CompressedImage on ``image/compressed`` instead.
    ``received[key]``: the messages (only with ``keep_messages``; the benchmark drops them, as
    thousands of 640x480 depth images would fill its memory); ``arrivals[key]``: (stamp ns,
    receive time) of each; ``sent``: stamp ns -> publish time of frames sent with :meth:`publish`.
    ``outputs``: the keys to subscribe to (a subscriber costs the node a delivery per frame, so the
    benchmark takes only what it measures).
    """

    def __init__(self, prefix: str = "", reliability=ReliabilityPolicy.RELIABLE, *,
                 name: str = "moadepth_test_client", qos_depth: int = 10, keep_messages: bool = True,
                 outputs: Iterable[str] = DEFAULT_OUTPUTS, image_transport: str = "raw") -> None:
        super().__init__(name)
        qos = QoSProfile(depth=qos_depth, reliability=reliability)
        p = prefix.rstrip("/")
        image_topic = f"{p}/image" if p else "image"
        if image_transport == "compressed":  # image_transport's compressed plugin: <image>/compressed
            self.image_pub = self.create_publisher(CompressedImage, image_topic + "/compressed", qos)
        else:
            self.image_pub = self.create_publisher(Image, image_topic, qos)
        self.info_pub = self.create_publisher(CameraInfo, f"{p}/camera_info" if p else "camera_info", qos)
        self.lock = threading.Lock()
        self.keep_messages = keep_messages
        self.received: dict[str, list] = {k: [] for k in OUTPUTS}
        self.arrivals: dict[str, list[tuple[int, float]]] = {k: [] for k in OUTPUTS}
        self.sent: dict[int, float] = {}
        self.outputs = tuple(outputs)  # the node outputs this client reads
        out_qos = QoSProfile(depth=qos_depth, reliability=ReliabilityPolicy.RELIABLE)
        for key in self.outputs:
            typ, topic = OUTPUTS[key]
            self.create_subscription(typ, f"{p}/{topic}" if p else topic, self._make_cb(key), out_qos)

    def _make_cb(self, key: str):
        def cb(msg) -> None:
            t = time.monotonic()
            stamp = stamp_of(msg)
            with self.lock:
                self.arrivals[key].append((stamp, t))
                if self.keep_messages:
                    self.received[key].append(msg)
        return cb

    def publish(self, image: Image | CompressedImage, info: CameraInfo | None, stamp_ns: int) -> None:
        """Stamp ``image`` (and ``info``) with ``stamp_ns``, note the publish time, publish info then image."""
        image.header.stamp.sec, image.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
        if info is not None:
            info.header.stamp = image.header.stamp
        with self.lock:
            self.sent[stamp_ns] = time.monotonic()
        if info is not None:
            self.info_pub.publish(info)
        self.image_pub.publish(image)

    def got(self, key: str) -> list:
        with self.lock:
            return list(self.received[key])

    def stamps(self, key: str) -> list[int]:
        with self.lock:
            return [s for s, _ in self.arrivals[key]]

    def clear(self) -> None:
        with self.lock:
            for records in (*self.received.values(), *self.arrivals.values()):
                records.clear()
            self.sent.clear()


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
