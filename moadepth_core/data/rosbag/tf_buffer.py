"""A time-indexed transform buffer: what ``tf2_ros::Buffer`` does for a recorded ``/tf``, without ROS.

Why: costmap-level evaluation puts each frame's points into a fixed frame (``odom``) with the
robot's pose at that image's stamp, and a bag records the pose as ``/tf`` (moving edges such as
``odom -> base_link``) next to ``/tf_static`` (the camera mount). ``tf2_ros`` is not installable
here and the core must not import ROS, so the chain is resolved in numpy.

Conventions follow tf2: an edge ``parent -> child`` holds ``T_parent_child``, frame ids lose a
leading ``/``, a child has one parent. A dynamic edge is interpolated between the two recorded
stamps around the query (linear translation, slerp rotation); a stamp before the first or after
the last recorded transform of an edge is an error, as tf2's ``ExtrapolationException``, unless
it lies within ``tolerance_ns`` of that end (then the end transform is used). Static edges hold
at every time.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from moadepth_core.errors import DataError
from moadepth_core.geometry import (
    compose_transforms,
    interpolate_transform,
    invert_transform,
    transform_matrix,
)

TF_TYPE = "tf2_msgs/msg/TFMessage"


def _norm(frame: str) -> str:
    return str(frame).strip().lstrip("/")


def _secs(ns: int) -> str:
    return f"{ns / 1e9:.3f} s"


@dataclass
class _Track:
    """The recorded history of one dynamic edge, kept sorted by stamp."""

    parent: str
    stamps: list[int] = field(default_factory=list)
    transforms: list[np.ndarray] = field(default_factory=list)

    def add(self, stamp_ns: int, T: np.ndarray) -> None:
        j = bisect.bisect_left(self.stamps, stamp_ns)
        if j < len(self.stamps) and self.stamps[j] == stamp_ns:
            self.transforms[j] = T  # same stamp again: the later message wins
            return
        self.stamps.insert(j, stamp_ns)
        self.transforms.insert(j, T)


class TfBuffer:
    """Static and dynamic transforms; :meth:`lookup` chains them at one stamp (tf2's lookupTransform).

    Parameters
    ----------
    tolerance_ns : how far past either end of a dynamic edge's record a stamp may lie and still
        get that end's transform (0: none, as tf2).
    name : what error sentences call the data (e.g. ``bag /data/run1``).
    """

    def __init__(self, tolerance_ns: int = 0, name: str = "the transforms") -> None:
        if tolerance_ns < 0:
            raise DataError(f"transform tolerance {tolerance_ns} ns must not be negative")
        self.tolerance_ns = int(tolerance_ns)
        self.name = name
        self._static: dict[str, tuple[str, np.ndarray]] = {}  # child -> (parent, T_parent_child)
        self._dynamic: dict[str, _Track] = {}  # child -> track

    # -- filling -----------------------------------------------------------------------------------
    def _check(self, parent: str, child: str, T: np.ndarray, kind: str) -> tuple[str, str, np.ndarray]:
        parent, child = _norm(parent), _norm(child)
        if not parent or not child:
            raise DataError(f"{kind} transform {parent!r} -> {child!r} in {self.name} has an empty frame id")
        if parent == child:
            raise DataError(f"{kind} transform from frame {parent!r} to itself in {self.name}")
        T = np.asarray(T, dtype=np.float64)
        if T.shape != (4, 4) or not np.isfinite(T).all():
            raise DataError(f"{kind} transform {parent!r} -> {child!r} in {self.name} is not a finite 4x4 matrix")
        return parent, child, T

    def _both(self, child: str) -> DataError:
        return DataError(f"frame {child!r} is moved by both static and dynamic transforms in {self.name}; "
                         "tf2 allows one parent edge per frame")

    def add_static(self, parent: str, child: str, T_parent_child: np.ndarray) -> None:
        """Add (or replace) a transform that holds at all times (``/tf_static``)."""
        parent, child, T = self._check(parent, child, T_parent_child, "static")
        if child in self._dynamic:
            raise self._both(child)
        self._static[child] = (parent, T)

    def add(self, parent: str, child: str, stamp_ns: int, T_parent_child: np.ndarray) -> None:
        """Add a transform of ``child`` in ``parent`` valid at ``stamp_ns`` (``/tf``)."""
        parent, child, T = self._check(parent, child, T_parent_child, "dynamic")
        if child in self._static:
            raise self._both(child)
        track = self._dynamic.get(child)
        if track is None:
            track = self._dynamic[child] = _Track(parent)
        elif track.parent != parent:
            raise DataError(f"frame {child!r} has two parents in {self.name}: {track.parent!r} and {parent!r}; "
                            "tf2 allows one")
        track.add(int(stamp_ns), T)

    def add_message(self, msg, static: bool) -> None:
        """Add every transform of a deserialised tf2_msgs/TFMessage."""
        for ts in msg.transforms:
            tr, q = ts.transform.translation, ts.transform.rotation
            T = transform_matrix((tr.x, tr.y, tr.z), (q.x, q.y, q.z, q.w))
            if static:
                self.add_static(ts.header.frame_id, ts.child_frame_id, T)
            else:
                stamp = ts.header.stamp.sec * 1_000_000_000 + ts.header.stamp.nanosec
                self.add(ts.header.frame_id, ts.child_frame_id, stamp, T)

    # -- queries -----------------------------------------------------------------------------------
    @property
    def frames(self) -> list[str]:
        """Every frame id known to the buffer, sorted."""
        names = set(self._static) | set(self._dynamic)
        names.update(p for p, _ in self._static.values())
        names.update(t.parent for t in self._dynamic.values())
        return sorted(names)

    @property
    def has_dynamic(self) -> bool:
        return bool(self._dynamic)

    def time_range(self, child: str) -> tuple[int, int] | None:
        """First and last recorded stamp of the dynamic edge into ``child`` (None when static or unknown)."""
        track = self._dynamic.get(_norm(child))
        return None if track is None else (track.stamps[0], track.stamps[-1])

    def _known(self) -> str:
        return ", ".join(self.frames) or "none"

    def _edge(self, child: str, stamp_ns: int | None, target: str, source: str) -> np.ndarray:
        """T_parent_child of ``child``'s edge at ``stamp_ns`` (None: static edges only)."""
        if child in self._static:
            return self._static[child][1]
        track = self._dynamic[child]
        if stamp_ns is None:
            raise DataError(f"no static transform from frame {source!r} to frame {target!r} in {self.name}: "
                            f"{track.parent!r} -> {child!r} moves (it is on /tf), so a time is needed")
        s = track.stamps
        lo, hi = s[0] - self.tolerance_ns, s[-1] + self.tolerance_ns
        if stamp_ns < lo or stamp_ns > hi:
            when = "before the first" if stamp_ns < lo else "after the last"
            raise DataError(
                f"no transform from frame {source!r} to frame {target!r} at {_secs(stamp_ns)} in {self.name}: it is "
                f"{when} transform {track.parent!r} -> {child!r} (recorded {_secs(s[0])} to {_secs(s[-1])}); "
                f"known frames: {self._known()}")
        j = bisect.bisect_left(s, stamp_ns)
        if j < len(s) and s[j] == stamp_ns:
            return track.transforms[j]
        if j == 0:
            return track.transforms[0]
        if j == len(s):
            return track.transforms[-1]
        alpha = (stamp_ns - s[j - 1]) / (s[j] - s[j - 1])
        return interpolate_transform(track.transforms[j - 1], track.transforms[j], alpha)

    def _parent(self, child: str) -> str | None:
        if child in self._static:
            return self._static[child][0]
        if child in self._dynamic:
            return self._dynamic[child].parent
        return None

    def _path_to_root(self, frame: str) -> list[str]:
        path, seen = [frame], {frame}
        while (p := self._parent(path[-1])) is not None:
            if p in seen:
                raise DataError(f"the transforms in {self.name} form a loop through frame {p!r}")
            path.append(p)
            seen.add(p)
        return path

    def lookup(self, target: str, source: str, stamp_ns: int | None = None) -> np.ndarray:
        """``T_target_source`` at ``stamp_ns``: maps points expressed in ``source`` into ``target``.
        ``stamp_ns`` None: a chain of static transforms only (a camera's mount)."""
        target, source = _norm(target), _norm(source)
        if target == source:
            return np.eye(4)
        known = set(self.frames)
        for name in (target, source):
            if name not in known:
                raise DataError(f"no transform from frame {source!r} to frame {target!r} in {self.name}: frame "
                                f"{name!r} was never recorded; known frames: {self._known()}")
        up_s, up_t = self._path_to_root(source), self._path_to_root(target)
        common = next((f for f in up_s if f in set(up_t)), None)
        if common is None:
            raise DataError(f"no transform from frame {source!r} to frame {target!r} in {self.name}: no chain of "
                            f"transforms connects them; known frames: {self._known()}")
        T_common_source = np.eye(4)
        for child in up_s[:up_s.index(common)]:  # walk up from source: T_parent_source = T_parent_child @ ...
            T_common_source = compose_transforms(self._edge(child, stamp_ns, target, source), T_common_source)
        T_common_target = np.eye(4)
        for child in up_t[:up_t.index(common)]:
            T_common_target = compose_transforms(self._edge(child, stamp_ns, target, source), T_common_target)
        return compose_transforms(invert_transform(T_common_target), T_common_source)

    def can_transform(self, target: str, source: str, stamp_ns: int | None = None) -> bool:
        try:
            self.lookup(target, source, stamp_ns)
        except DataError:
            return False
        return True


def read_bag_tf(path: str | os.PathLike, tf_topic: str = "/tf", tf_static_topic: str = "/tf_static",
                tolerance_ns: int = 0) -> TfBuffer:
    """A :class:`TfBuffer` of every transform a rosbag2 recording holds on ``tf_topic`` and ``tf_static_topic``.

    Opens the bag the way :class:`~moadepth_core.data.rosbag.source.BagSource` does (``rosbags``,
    Kilted typestore). A bag without either topic gives an empty buffer: callers decide whether
    that is an error (see :attr:`TfBuffer.has_dynamic`).
    """
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    path = Path(path)
    if not path.exists():
        raise DataError(f"bag {path} does not exist")
    buf = TfBuffer(tolerance_ns=tolerance_ns, name=f"bag {path}")
    try:
        with AnyReader([path], default_typestore=get_typestore(Stores.ROS2_KILTED)) as reader:
            conns = [c for c in reader.connections
                     if c.topic in (tf_topic, tf_static_topic) and c.msgtype == TF_TYPE]
            for conn, _, raw in reader.messages(connections=conns):
                buf.add_message(reader.deserialize(raw, conn.msgtype), static=conn.topic == tf_static_topic)
    except DataError:
        raise
    except Exception as exc:  # rosbags/mcap/sqlite raise many types on a damaged file
        detail = " ".join(str(exc).split()).rstrip(".")[:200] or type(exc).__name__
        raise DataError(f"cannot read the transforms of bag {path}: it is truncated or corrupt ({detail})") from exc
    return buf
