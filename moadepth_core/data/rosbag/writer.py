"""Write RGB-D recordings as rosbag2 (MCAP or SQLite3) without a ROS install.

Built on ``rosbags`` with the Kilted typestore so that bags written here are
byte-compatible with what ``ros2 bag record`` produces for the same messages,
and can be replayed or evaluated by the ROS layer and by real ROS tools.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from moadepth_core.errors import DataError

# encoding -> (numpy dtype with explicit little-endian byte order, channels)
_ENCODINGS: dict[str, tuple[str, int]] = {
    "rgb8": ("u1", 3),
    "bgr8": ("u1", 3),
    "rgba8": ("u1", 4),
    "bgra8": ("u1", 4),
    "mono8": ("u1", 1),
    "8UC1": ("u1", 1),
    "mono16": ("<u2", 1),
    "16UC1": ("<u2", 1),
    "32FC1": ("<f4", 1),
}

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
TF_TYPE = "tf2_msgs/msg/TFMessage"


def _latched_qos() -> list[Any]:
    """The QoS a static-transform broadcaster offers (reliable, transient local, keep last 1).

    Recorded so that a player re-offers ``/tf_static`` as latched: late joiners
    (a node started after playback began) still get the static transforms.
    """
    from rosbags.interfaces import (
        Qos,
        QosDurability,
        QosHistory,
        QosLiveliness,
        QosReliability,
        QosTime,
    )

    zero = QosTime(sec=0, nsec=0)
    return [
        Qos(
            history=QosHistory.KEEP_LAST,
            depth=1,
            reliability=QosReliability.RELIABLE,
            durability=QosDurability.TRANSIENT_LOCAL,
            deadline=zero,
            lifespan=zero,
            liveliness=QosLiveliness.AUTOMATIC,
            liveliness_lease_duration=zero,
            avoid_ros_namespace_conventions=False,
        )
    ]


def encode_image_bytes(array: np.ndarray, encoding: str) -> tuple[np.ndarray, int]:
    """Return (flat uint8 buffer, step) for ``array`` in ``encoding`` (little-endian, row-major)."""
    if encoding not in _ENCODINGS:
        raise DataError(f"Image encoding {encoding!r} is not supported; use one of {sorted(_ENCODINGS)}.")
    dtype, channels = _ENCODINGS[encoding]
    arr = np.asarray(array)
    if channels == 1 and arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    expected_ndim = 2 if channels == 1 else 3
    if arr.ndim != expected_ndim or (channels > 1 and arr.shape[2] != channels):
        raise DataError(f"Image of shape {arr.shape} does not match encoding {encoding!r}.")
    arr = np.ascontiguousarray(arr.astype(dtype, copy=False))
    step = arr.shape[1] * arr.itemsize * channels
    return arr.reshape(-1).view(np.uint8), step


class RGBDBagWriter:
    """Context manager writing sensor_msgs images, camera infos and static TF into a rosbag2.

    Topics are registered explicitly with :meth:`add_topic` (or implicitly on
    first write) so that each topic has one connection and one message type.
    """

    def __init__(self, path: str | Path, storage: str = "mcap") -> None:
        from rosbags.rosbag2 import StoragePlugin
        from rosbags.typesys import Stores, get_typestore

        plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
        if storage not in plugins:
            raise DataError(f"Bag storage {storage!r} is not supported; use 'mcap' or 'sqlite3'.")
        self.path = Path(path)
        if self.path.exists():
            raise DataError(f"Bag path {self.path} exists already; rosbag2 bags are never overwritten.")
        self.storage = storage
        self.typestore = get_typestore(Stores.ROS2_KILTED)
        self._plugin = plugins[storage]
        self._writer: Any = None
        self._connections: dict[str, Any] = {}

    # -- lifecycle -------------------------------------------------------------------------------
    def open(self) -> RGBDBagWriter:
        from rosbags.rosbag2 import Writer

        self._writer = Writer(self.path, version=9, storage_plugin=self._plugin)
        self._writer.open()
        return self

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> RGBDBagWriter:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- topics ----------------------------------------------------------------------------------
    def add_topic(self, name: str, msgtype: str, latched: bool = False) -> None:
        """Register ``name`` with ``msgtype``; ``latched`` records a transient-local offered QoS."""
        if self._writer is None:
            raise DataError(f"Bag {self.path} is not open; use RGBDBagWriter as a context manager.")
        if name in self._connections:
            if self._connections[name].msgtype != msgtype:
                raise DataError(
                    f"Topic {name} is already registered as {self._connections[name].msgtype}, not {msgtype}."
                )
            return
        if msgtype not in self.typestore.types:
            raise DataError(f"Message type {msgtype!r} is unknown to the ROS 2 Kilted typestore.")
        qos = _latched_qos() if latched else ()
        self._connections[name] = self._writer.add_connection(
            name, msgtype, typestore=self.typestore, offered_qos_profiles=qos
        )

    def write_message(self, topic: str, msgtype: str, stamp_ns: int, msg: Any) -> None:
        """Serialise ``msg`` (a typestore message object) to CDR and write it at ``stamp_ns``."""
        if topic not in self._connections:
            self.add_topic(topic, msgtype)
        data = self.typestore.serialize_cdr(msg, msgtype)
        self._writer.write(self._connections[topic], int(stamp_ns), data)

    # -- message builders ------------------------------------------------------------------------
    def header(self, stamp_ns: int, frame_id: str) -> Any:
        t = self.typestore.types
        sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
        return t["std_msgs/msg/Header"](
            stamp=t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id=frame_id
        )

    def write_image(self, topic: str, stamp_ns: int, frame_id: str, array: np.ndarray, encoding: str) -> None:
        """Write an HxW(xC) array as sensor_msgs/Image (step = width * bytes per pixel, little-endian)."""
        data, step = encode_image_bytes(array, encoding)
        h, w = np.asarray(array).shape[:2]
        msg = self.typestore.types[IMAGE_TYPE](
            header=self.header(stamp_ns, frame_id),
            height=int(h),
            width=int(w),
            encoding=encoding,
            is_bigendian=0,
            step=int(step),
            data=data,
        )
        self.write_message(topic, IMAGE_TYPE, stamp_ns, msg)

    def write_compressed(self, topic: str, stamp_ns: int, frame_id: str, fmt: str, data: bytes) -> None:
        """Write a sensor_msgs/CompressedImage (``fmt``/``data`` as image_transport's plugins make them,
        see :mod:`moadepth_core.geometry.compressed`)."""
        msg = self.typestore.types[COMPRESSED_TYPE](
            header=self.header(stamp_ns, frame_id), format=fmt, data=np.frombuffer(data, dtype=np.uint8))
        self.write_message(topic, COMPRESSED_TYPE, stamp_ns, msg)

    def write_camera_info(
        self,
        topic: str,
        stamp_ns: int,
        frame_id: str,
        K: np.ndarray,
        width: int,
        height: int,
        D: Sequence[float] | None = None,
        distortion_model: str = "plumb_bob",
    ) -> None:
        """Write a CameraInfo for a rectified pinhole camera: R = I, P = [K | 0]."""
        K = np.asarray(K, dtype=np.float64).reshape(3, 3)
        d = np.zeros(5) if D is None else np.asarray(D, dtype=np.float64).reshape(-1)
        P = np.zeros((3, 4))
        P[:, :3] = K
        t = self.typestore.types
        msg = t[CAMERA_INFO_TYPE](
            header=self.header(stamp_ns, frame_id),
            height=int(height),
            width=int(width),
            distortion_model=distortion_model,
            d=d.astype(np.float64),
            k=K.reshape(-1).copy(),
            r=np.eye(3).reshape(-1),
            p=P.reshape(-1),
            binning_x=0,
            binning_y=0,
            roi=t["sensor_msgs/msg/RegionOfInterest"](
                x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
            ),
        )
        self.write_message(topic, CAMERA_INFO_TYPE, stamp_ns, msg)

    def write_tf_static(
        self,
        stamp_ns: int,
        transforms: Sequence[tuple[str, str, Sequence[float], Sequence[float]]],
        topic: str = "/tf_static",
    ) -> None:
        """Write one TFMessage of (parent, child, translation xyz, quaternion xyzw) on a latched topic."""
        self._write_tf(stamp_ns, transforms, topic, latched=True)

    def write_tf(
        self,
        stamp_ns: int,
        transforms: Sequence[tuple[str, str, Sequence[float], Sequence[float]]],
        topic: str = "/tf",
    ) -> None:
        """Write one TFMessage of moving transforms (what a tf2 broadcaster sends), each stamped ``stamp_ns``."""
        self._write_tf(stamp_ns, transforms, topic, latched=False)

    def _write_tf(self, stamp_ns: int, transforms, topic: str, latched: bool) -> None:
        t = self.typestore.types
        stamped = []
        for parent, child, xyz, q in transforms:
            if len(xyz) != 3 or len(q) != 4:
                raise DataError(f"Transform {parent} -> {child} needs 3 translations and a 4-quaternion.")
            stamped.append(
                t["geometry_msgs/msg/TransformStamped"](
                    header=self.header(stamp_ns, parent),
                    child_frame_id=child,
                    transform=t["geometry_msgs/msg/Transform"](
                        translation=t["geometry_msgs/msg/Vector3"](
                            x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2])
                        ),
                        rotation=t["geometry_msgs/msg/Quaternion"](
                            x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])
                        ),
                    ),
                )
            )
        if topic not in self._connections:
            self.add_topic(topic, TF_TYPE, latched=latched)
        self.write_message(topic, TF_TYPE, stamp_ns, t[TF_TYPE](transforms=stamped))
