"""Frame sequences of a rosbag2 recording with the camera's motion from ``/tf``: self-supervised training data.

Why: a robot without a depth camera still records its camera and its odometry. With the relative
pose of two frames known, the depth of one predicts how the other looks (view synthesis,
Monodepth2), which is a training signal, and a metric one, since the poses are metric.

What it does:

1. Reads the image topic only (:class:`BagSource` with ``images_only``: no depth can reach the
   loss), the image CameraInfo (required) and every ``/tf`` + ``/tf_static`` transform
   (:func:`read_bag_tf`).
2. Looks up the camera's optical frame (the images' ``frame_id``) in the fixed frame (``odom``)
   at each image stamp, interpolated between recorded transforms.
3. For each frame t takes the neighbours t-k and t+k; a neighbour is used when both poses exist
   and the camera moved at least ``min_translation`` between them (pure rotation or standing
   still carries no depth signal). A frame with no usable neighbour is skipped. Every skip is
   counted in :attr:`BagSequence.stats`, by reason.
4. Fewer than ``min_usable_fraction`` (10 %) usable frames stops with one sentence saying why.

Item ``i`` (:meth:`BagSequence.item`) is the target frame, its two source frames (``None`` where
unusable) and ``T_src_tgt`` for each: the 4x4 transform mapping points in the target camera's
optical frame into the source camera's.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from moadepth_core.data.frames import RGBDFrame, RGBDSource
from moadepth_core.data.rosbag.source import BagSource
from moadepth_core.data.rosbag.tf_buffer import TfBuffer, read_bag_tf
from moadepth_core.errors import DataError
from moadepth_core.geometry import compose_transforms, invert_transform

log = logging.getLogger("moadepth")

MIN_USABLE_FRACTION = 0.10


@dataclass
class SequenceItem:
    """One training sample's frames: the target, its sources at -k and +k (None: unusable) and their poses."""

    target: RGBDFrame
    sources: list[RGBDFrame | None]
    T_src_tgt: list[np.ndarray | None]  # 4x4 target optical -> source optical, None where unusable
    depth: np.ndarray | None = None  # mixed only: the target's depth in metres (0 = none), None when absent
    target_index: int = -1  # frame indices in the bag's images (BagSequence.images)
    source_indices: list[int | None] | None = None


class BagSequence(RGBDSource):
    """The usable target frames of a bag (``source[i]`` is the target frame, depth all zero).

    Parameters
    ----------
    path : the bag.
    image_topic, camera_info_topic : as :class:`BagSource`; the CameraInfo is required.
    frame_offset : k, the source frames are t-k and t+k.
    min_translation : metres the camera must move between target and source.
    fixed_frame : the TF frame the camera poses are looked up in.
    camera_frame : the camera's optical frame; default the images' ``frame_id``.
    depth_topic : ``mixed`` only: a depth topic whose message with an image's stamp (if any) is
        returned in :attr:`SequenceItem.depth`; ``None`` reads no depth at all.
    start, stop : fractions of the images (time order) to use, as :class:`BagSource`.
    """

    def __init__(self, path: str | os.PathLike, image_topic: str | None = None, *,
                 camera_info_topic: str | None = None, frame_offset: int = 1, min_translation: float = 0.05,
                 fixed_frame: str = "odom", camera_frame: str | None = None, depth_topic: str | None = None,
                 start: float = 0.0, stop: float = 1.0, tf_tolerance_ns: int = 0,
                 min_usable_fraction: float = MIN_USABLE_FRACTION, cache_frames: int = 512) -> None:
        if frame_offset < 1:
            raise DataError(f"frame_offset must be at least 1, got {frame_offset}")
        self.images = BagSource(path, image_topic=image_topic, camera_info_topic=camera_info_topic,
                                images_only=True, start=start, stop=stop,
                                extra_topics=[depth_topic] if depth_topic else [])
        self.path = self.images.path
        self.image_topic = self.images.image_topic
        self.depth_topic = depth_topic
        if self.images.camera_info_topic is None:  # BagSource accepts K instead; here there is none
            raise DataError(f"bag {self.path} has no CameraInfo for image topic {self.image_topic}; "
                            "photometric training needs the camera's intrinsics")
        self.k = int(frame_offset)
        self.min_translation = float(min_translation)
        self.fixed_frame = fixed_frame.strip().lstrip("/")
        n = len(self.images)
        if n == 0:
            raise DataError(f"bag {self.path} has no {self.image_topic} messages in the selected range")
        self.camera_frame = (camera_frame or self.images.frame_id(0)).strip().lstrip("/")
        if not self.camera_frame:
            raise DataError(f"the images on {self.image_topic} in bag {self.path} have no frame_id; "
                            "set photometric.camera_frame to the camera's optical frame")
        self.tf = read_bag_tf(self.path, tolerance_ns=tf_tolerance_ns)
        self._check_tf()
        poses = self._poses()
        self._build(poses, min_usable_fraction)
        self._cache: OrderedDict[int, RGBDFrame] = OrderedDict()
        self._cache_size = int(cache_frames)

    # -- TF ----------------------------------------------------------------------------------------
    def _pair(self) -> str:
        return f"{self.fixed_frame!r} -> {self.camera_frame!r}"

    def _check_tf(self) -> None:
        """No /tf at all, or no chain fixed frame -> camera: one sentence naming the frames."""
        tf = self.tf
        if not tf.has_dynamic:
            topics = self.images.topics()
            what = "no /tf topic" if "/tf" not in topics else "no moving transform on /tf"
            raise DataError(f"bag {self.path} has {what}: photometric training needs the camera's motion "
                            f"{self._pair()} from odometry in /tf")
        lo, hi = self._tf_range()
        probe = (lo + hi) // 2 if lo <= hi else lo
        try:
            tf.lookup(self.fixed_frame, self.camera_frame, probe)
        except DataError as exc:
            detail = str(exc).split(" in bag ")[-1] if " in bag " in str(exc) else str(exc)
            raise DataError(f"bag {self.path} has no transform path {self._pair()} in /tf and /tf_static "
                            f"(set photometric.fixed_frame / camera_frame); {_after_colon(detail)}") from None

    def _tf_range(self) -> tuple[int, int]:
        """The stamps at which every dynamic edge has a record (intersection of their ranges)."""
        ranges = [r for f in self.tf.frames if (r := self.tf.time_range(f)) is not None]
        return max(r[0] for r in ranges), min(r[1] for r in ranges)

    def _poses(self) -> list[np.ndarray | None]:
        """T_fixed_camera at each image stamp; None where the stamp lies outside the /tf record."""
        out: list[np.ndarray | None] = []
        for i in range(len(self.images)):
            try:
                out.append(self.tf.lookup(self.fixed_frame, self.camera_frame, self.images.stamp_ns(i)))
            except DataError:  # the chain exists (checked): only extrapolation fails here
                out.append(None)
        return out

    # -- neighbours --------------------------------------------------------------------------------
    def _build(self, poses: list[np.ndarray | None], min_usable_fraction: float) -> None:
        n = len(poses)
        k = self.k
        stats = {"images": n, "usable": 0, "skipped_frames": 0, "outside_tf": 0, "neighbours_used": 0,
                 "neighbours_too_little_motion": 0, "neighbours_outside_tf": 0, "neighbours_past_the_end": 0}
        self._items: list[tuple[int, list[int | None], list[np.ndarray | None]]] = []
        for t in range(n):
            if poses[t] is None:
                stats["outside_tf"] += 1
                stats["skipped_frames"] += 1
                continue
            srcs: list[int | None] = []
            rels: list[np.ndarray | None] = []
            for s in (t - k, t + k):
                rel = None
                if not 0 <= s < n:
                    stats["neighbours_past_the_end"] += 1
                elif poses[s] is None:
                    stats["neighbours_outside_tf"] += 1
                else:
                    T = compose_transforms(invert_transform(poses[s]), poses[t])  # T_src_tgt
                    if np.linalg.norm(T[:3, 3]) < self.min_translation:
                        stats["neighbours_too_little_motion"] += 1
                    else:
                        rel = T
                        stats["neighbours_used"] += 1
                srcs.append(s if rel is not None else None)
                rels.append(rel)
            if all(s is None for s in srcs):
                stats["skipped_frames"] += 1
                continue
            self._items.append((t, srcs, rels))
        stats["usable"] = len(self._items)
        self.stats = stats
        if stats["usable"] < min_usable_fraction * n or stats["usable"] == 0:
            raise DataError(self._why_unusable(poses, min_usable_fraction))
        if stats["skipped_frames"]:
            log.warning("photometric: %d of %d frames of %s skipped (%s)", stats["skipped_frames"], n,
                        self.image_topic, self._skip_detail())

    def _skip_detail(self) -> str:
        s = self.stats
        return (f"{s['outside_tf']} outside the /tf record, the rest without a neighbour at +-{self.k} that moved "
                f"at least {self.min_translation:g} m: {s['neighbours_too_little_motion']} neighbours moved less, "
                f"{s['neighbours_outside_tf']} outside /tf, {s['neighbours_past_the_end']} past the ends")

    def _why_unusable(self, poses: list[np.ndarray | None], fraction: float) -> str:
        s = self.stats
        n = s["images"]
        where = f"{self.image_topic} in bag {self.path}"
        if s["outside_tf"] == n:
            lo, hi = self._tf_range()
            return (f"the image stamps of {where} ({_secs(self.images.stamp_ns(0))} to "
                    f"{_secs(self.images.stamp_ns(n - 1))}) all lie outside the /tf record of {self._pair()} "
                    f"({_secs(lo)} to {_secs(hi)})")
        known = [p[:3, 3] for p in poses if p is not None]
        reach = max(float(np.linalg.norm(p - known[0])) for p in known)
        if reach < self.min_translation:
            return (f"camera frame {self.camera_frame!r} never moves in {where}: it stays within {reach:.3f} m of "
                    f"its first pose in {self.fixed_frame!r}, and photometric training needs it to move at least "
                    f"{self.min_translation:g} m between frames")
        return (f"only {s['usable']} of {n} frames of {where} are usable for photometric training (under "
                f"{fraction:.0%}): {self._skip_detail()}; raise photometric.frame_offset or lower "
                f"photometric.min_translation")

    # -- reading -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._items)

    def _frame(self, j: int) -> RGBDFrame:
        f = self._cache.get(j)
        if f is None:
            f = self.images[j]
            self._cache[j] = f
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return f

    def _get(self, index: int) -> RGBDFrame:
        return self._frame(self._items[index][0])

    def item(self, index: int) -> SequenceItem:
        t, srcs, rels = self._items[index]
        depth = None
        if self.depth_topic:
            target = self._frame(t)
            depth = self.images.extra(t, self.depth_topic, hw=target.hw)
        return SequenceItem(target=self._frame(t), sources=[None if s is None else self._frame(s) for s in srcs],
                            T_src_tgt=[None if r is None else r.copy() for r in rels], depth=depth,
                            target_index=t, source_indices=list(srcs))

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()
        return state

    def describe(self) -> str:
        s = self.stats
        return (f"rosbag2 {self.path}: {s['usable']} of {s['images']} frames of {self.image_topic} usable for "
                f"photometric training with sources at +-{self.k} ({s['skipped_frames']} skipped), camera "
                f"{self.camera_frame!r} in {self.fixed_frame!r} from /tf")


def _secs(ns: int) -> str:
    return f"{ns / 1e9:.3f} s"


def _after_colon(text: str) -> str:
    """The reason part of a TfBuffer sentence ('no transform from ... : <reason>')."""
    return text.split(": ", 1)[-1] if ": " in text else text


__all__ = ["BagSequence", "SequenceItem", "TfBuffer"]
