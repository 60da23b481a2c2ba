"""rosbag2 recordings (MCAP or SQLite3) as an :class:`RGBDSource`: a robot's own RGB-D data.

Why this shape: a robot team's ground truth is a recording from an RGB-D camera, not a
dataset folder. This reader turns one into the same :class:`RGBDFrame` every other source
yields, so training (``moadepth train --data BAG``) and ``bag_eval`` see identical frames.

What it does, in order:

1. One indexing pass over the bag (``rosbags.AnyReader``, no ROS install): the header stamp
   and frame id of every image and depth message (parsed from the CDR bytes, images are not
   decoded), every CameraInfo, and ``/tf_static`` into a :class:`~moadepth_core.data.rosbag.tf_buffer.TfBuffer`.
2. Pairing: each image takes the depth with the nearest header stamp within
   ``max_time_diff`` seconds (one depth per image; the closer image wins a tie-break); images without one and depths no image took are counted in
   :attr:`BagSource.stats`. Frames are in stamp order, so a split by index is a split by time.
3. ``source[i]`` reads just those two messages (MCAP chunks are seeked by time), decodes any
   REP 118 depth (16UC1 in ``depth_scale`` units per metre, default millimetres; 32FC1 metres)
   and colour encoding (mono8 becomes three grey channels), and puts depth into the image
   camera: same camera and size as is, same camera other size by nearest-neighbour resize,
   otherwise registration with both CameraInfos and the static transform chain between the
   two frame ids (:func:`moadepth_core.geometry.register_depth`).

Topic discovery is :mod:`~moadepth_core.data.rosbag.topics`; decoding and registration of one
frame :mod:`~moadepth_core.data.rosbag.frame_reading`; this module opens, indexes and pairs.

``start``/``stop`` keep a time fraction of the paired frames (e.g. ``stop=0.6`` for the first
60 % of a trajectory). Every problem with the file ends in a :class:`DataError` naming it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moadepth_core import geometry
from moadepth_core.data.frames import RGBDFrame, RGBDSource
from moadepth_core.data.rosbag.frame_reading import DepthIntoImageCamera, decode_metres, decode_rgb
from moadepth_core.data.rosbag.messages import (
    CAMERA_INFO_TYPE,
    TF_TYPES,
    camera_topic_sibling,
    header_from_cdr,
)
from moadepth_core.data.rosbag.pairing import IndexedMsg, nearest, pair_by_stamp
from moadepth_core.data.rosbag.tf_buffer import TfBuffer
from moadepth_core.data.rosbag.topics import info_sibling, missing_topic, pick_topic
from moadepth_core.errors import DataError, MoadepthError
from moadepth_core.geometry import image_buffers as imaging

__all__ = ["DEFAULT_MAX_TIME_DIFF", "BagSource", "camera_topic_sibling", "header_from_cdr"]

DEFAULT_MAX_TIME_DIFF = 0.02  # seconds: under half a frame at 30 fps


@dataclass
class _Info:
    stamp_ns: int
    K: np.ndarray
    hw: tuple[int, int]
    frame_id: str


class BagSource(RGBDSource):
    """Paired, registered RGB-D frames of a rosbag2 recording (see the module docstring).

    Parameters
    ----------
    path : the bag directory (with metadata.yaml) or a single ``.mcap`` / ``.db3`` file.
    image_topic, depth_topic : sensor_msgs/Image topics; ``None`` picks the only colour-looking /
        depth-looking Image topic (names containing ``color``/``rgb`` and ``depth``).
    camera_info_topic, depth_camera_info_topic : default: ``camera_info`` next to each image topic
        when the bag has it. The image CameraInfo (or ``K``) is required; the depth one only when
        the depth comes from another camera.
    depth_scale : units per metre of 16-bit depth (REP 118 default 1000); 32FC1 ignores it.
    max_time_diff : pairing tolerance in seconds.
    start, stop : fractions of the paired frames (time order) to keep.
    extra_topics : more depth-like Image topics to index, read with :meth:`extra` (e.g. recorded
        predictions that bag_eval scores against the ground truth).
    K : 3x3 intrinsics of the image, used when the bag has no CameraInfo for it.
    images_only : index only the image topic (no depth topic needed): every image is a frame and its
        depth is all zeros (invalid). Self-supervised training reads bags this way, so no depth can
        reach its loss.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        image_topic: str | None = None,
        depth_topic: str | None = None,
        camera_info_topic: str | None = None,
        depth_camera_info_topic: str | None = None,
        depth_scale: float | None = None,
        max_time_diff: float = DEFAULT_MAX_TIME_DIFF,
        tf_topic: str = "/tf_static",
        start: float = 0.0,
        stop: float = 1.0,
        extra_topics: tuple[str, ...] | list[str] = (),
        K: np.ndarray | None = None,
        images_only: bool = False,
    ) -> None:
        self.path = Path(path)
        self.images_only = bool(images_only)
        if not self.path.exists():
            raise DataError(f"bag {self.path} does not exist")
        if depth_scale is not None:
            imaging._check_scale(depth_scale)
        self.depth_scale = depth_scale
        if not (np.isfinite(max_time_diff) and max_time_diff >= 0):
            raise DataError(f"max_time_diff {max_time_diff!r} must be a non-negative number of seconds")
        self.max_time_diff_ns = int(round(float(max_time_diff) * 1e9))
        if not (0.0 <= float(start) < float(stop) <= 1.0):
            raise DataError(f"start={start} and stop={stop} must satisfy 0 <= start < stop <= 1")
        self._K_override = None if K is None else geometry.check_intrinsics(K)
        self._reader_obj = None
        self._reader_pid: int | None = None
        self._open_reader()
        try:
            self._index(image_topic, depth_topic, camera_info_topic, depth_camera_info_topic, tf_topic,
                        list(extra_topics))
        except MoadepthError:
            raise
        except Exception as exc:  # rosbags/mcap/sqlite raise many types on a damaged file
            raise self._corrupt(exc) from exc
        n = len(self._pairs)
        lo, hi = int(round(float(start) * n)), int(round(float(stop) * n))
        self._pairs = self._pairs[lo:hi]
        self.stats["selected"] = len(self._pairs)
        self._into_image_camera = DepthIntoImageCamera(self.path, self.tf)
        #: how depth reached the image camera so far: "same", "resize", "register"
        self.registration_modes: set[str] = self._into_image_camera.modes

    # -- reader ------------------------------------------------------------------------------------
    def _corrupt(self, exc: BaseException) -> DataError:
        detail = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
        if len(detail) > 200:
            detail = detail[:197] + "..."
        return DataError(f"cannot read bag {self.path}: it is truncated or corrupt ({detail})")

    def _open_reader(self):
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore

        path = self.path
        try:
            reader = AnyReader([path], default_typestore=get_typestore(Stores.ROS2_KILTED))
            reader.open()
        except Exception as exc:
            if path.is_dir() and not (path / "metadata.yaml").is_file():
                raise DataError(f"{path} is not a rosbag2 recording: it has no metadata.yaml") from exc
            raise self._corrupt(exc) from exc
        self._reader_obj, self._reader_pid = reader, os.getpid()
        return reader

    def _reader(self):
        """The open reader of this process (DataLoader workers fork: each opens its own file)."""
        if self._reader_obj is None or self._reader_pid != os.getpid():
            self._reader_obj = None
            return self._open_reader()
        return self._reader_obj

    def close(self) -> None:
        if self._reader_obj is not None and self._reader_pid == os.getpid():
            try:
                self._reader_obj.close()
            except Exception:  # closing a damaged file must not hide the original error
                pass
        self._reader_obj = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_reader_obj"] = None
        state["_reader_pid"] = None
        return state

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- indexing ----------------------------------------------------------------------------------
    def topics(self) -> dict[str, str]:
        """Topic name -> message type, as recorded."""
        return {c.topic: c.msgtype for c in self._reader().connections}

    def _index(self, image_topic, depth_topic, info_topic, depth_info_topic, tf_topic, extra_topics) -> None:
        """Topic discovery (:mod:`~moadepth_core.data.rosbag.topics`), then one pass over the bag's headers."""
        reader = self._reader()
        topics = self.topics()
        self.image_topic = pick_topic(self.path, topics, image_topic, "image", ("color", "rgb", "image"), True,
                                      avoid=("depth",))
        self.depth_topic = None if self.images_only else pick_topic(self.path, topics, depth_topic, "depth",
                                                                    ("depth",), True)
        self.camera_info_topic = pick_topic(self.path, topics, info_topic, "camera_info", (), False,
                                            CAMERA_INFO_TYPE) if info_topic else info_sibling(self.image_topic, topics)
        self.depth_camera_info_topic = None if self.images_only else (
            pick_topic(self.path, topics, depth_info_topic, "depth camera_info", (), False, CAMERA_INFO_TYPE)
            if depth_info_topic else info_sibling(self.depth_topic, topics)
        )
        if self.camera_info_topic is None and self._K_override is None:
            raise missing_topic(self.path, topics, "camera_info",
                                camera_topic_sibling(self.image_topic, msgtype=topics[self.image_topic]),
                                f" for image topic {self.image_topic} (pass the CameraInfo topic or K)")
        self.extra_topics = list(extra_topics)
        for t in self.extra_topics:
            pick_topic(self.path, topics, t, "extra", (), True)
        image_topics = {t for t in (self.image_topic, self.depth_topic, *self.extra_topics) if t}
        info_topics = {t for t in (self.camera_info_topic, self.depth_camera_info_topic) if t}
        tf_topics = {t for t, m in topics.items() if t == tf_topic and m in TF_TYPES}
        conns = [c for c in reader.connections if c.topic in image_topics | info_topics | tf_topics]
        self._conns = {t: [c for c in reader.connections if c.topic == t] for t in image_topics}
        msgs: dict[str, list[IndexedMsg]] = {t: [] for t in image_topics}
        infos: dict[str, list[_Info]] = {t: [] for t in info_topics}
        self.tf = TfBuffer(name="its /tf_static")
        for conn, log_ns, raw in reader.messages(connections=conns):
            if conn.topic in image_topics:
                stamp, frame = header_from_cdr(raw)
                msgs[conn.topic].append(IndexedMsg(stamp, log_ns, frame))
            elif conn.topic in info_topics:
                m = reader.deserialize(raw, conn.msgtype)
                K = np.asarray(m.k, dtype=np.float64).reshape(3, 3)
                if K[0, 0] > 0 and K[1, 1] > 0:
                    stamp = m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec
                    infos[conn.topic].append(_Info(stamp, K, (int(m.height), int(m.width)), m.header.frame_id))
            else:
                self.tf.add_message(reader.deserialize(raw, conn.msgtype), static=True)
        for lst in (*msgs.values(), *infos.values()):
            lst.sort(key=lambda x: x.stamp_ns)
        self._msgs, self._infos = msgs, infos
        if self.camera_info_topic and not infos[self.camera_info_topic] and self._K_override is None:
            raise DataError(f"bag {self.path}: camera_info topic {self.camera_info_topic} has no calibrated "
                            "message (all-zero K)")
        images = msgs[self.image_topic]
        depths = [] if self.images_only else msgs[self.depth_topic]
        if self.images_only:
            self._pairs, unpaired_depths = [(m, None) for m in images], 0
        else:
            self._pairs, unpaired_depths = pair_by_stamp(images, depths, self.max_time_diff_ns)
        self.stats = {
            "images": len(images),
            "depths": len(depths),
            "paired": len(self._pairs),
            "unpaired_images": len(images) - len(self._pairs),
            "unpaired_depths": unpaired_depths,
        }

    # -- reading -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._pairs)

    def stamp_ns(self, index: int) -> int:
        """Header stamp of frame ``index``'s image."""
        return self._pairs[index][0].stamp_ns

    def frame_id(self, index: int) -> str:
        """The TF frame of frame ``index``'s image: its header frame_id, else its CameraInfo's."""
        im_ref = self._pairs[index][0]
        if im_ref.frame_id:
            return im_ref.frame_id
        info = self._info(self.camera_info_topic, im_ref.stamp_ns)
        return info.frame_id if info is not None else ""

    def _read(self, topic: str, msg: IndexedMsg):
        try:
            reader = self._reader()
            for conn, _, raw in reader.messages(connections=self._conns[topic], start=msg.log_ns,
                                                stop=msg.log_ns + 1):
                if header_from_cdr(raw)[0] == msg.stamp_ns:
                    return reader.deserialize(raw, conn.msgtype)
        except MoadepthError:
            raise
        except Exception as exc:
            raise self._corrupt(exc) from exc
        raise DataError(f"cannot read bag {self.path}: the {topic} message stamped {msg.stamp_ns} ns vanished "
                        "between indexing and reading (truncated or corrupt)")

    def _info(self, topic: str | None, stamp_ns: int) -> _Info | None:
        if not topic or not self._infos.get(topic):
            return None
        lst = self._infos[topic]
        j = nearest([x.stamp_ns for x in lst], stamp_ns)
        return lst[j]

    def _get(self, index: int) -> RGBDFrame:
        im_ref, d_ref = self._pairs[index]
        im = self._read(self.image_topic, im_ref)
        rgb = decode_rgb(self.path, im)
        hw = rgb.shape[:2]
        info = self._info(self.camera_info_topic, im_ref.stamp_ns)
        if info is not None:
            K = info.K if info.hw == hw else geometry.scale_intrinsics(info.K, info.hw, hw)
        else:
            K = self._K_override
        if d_ref is None:  # images_only: no depth was read
            return RGBDFrame(rgb=rgb, depth=np.zeros(hw, np.float32), K=K, name=f"{index:06d}",
                             stamp_ns=im_ref.stamp_ns)
        depth = decode_metres(self.path, self._read(self.depth_topic, d_ref), "depth", self.depth_scale)
        dinfo = self._info(self.depth_camera_info_topic, d_ref.stamp_ns)
        depth = self._into_image_camera(depth, im_ref.frame_id or (info.frame_id if info else ""), K, hw,
                                        d_ref.frame_id or (dinfo.frame_id if dinfo else ""), dinfo)
        return RGBDFrame(rgb=rgb, depth=depth, K=K, name=f"{index:06d}", stamp_ns=im_ref.stamp_ns)

    def extra(self, index: int, topic: str, hw: tuple[int, int] | None = None) -> np.ndarray | None:
        """Depth on ``topic`` (an ``extra_topics`` entry) stamped like frame ``index``'s image.

        Metres with invalid = 0, nearest-resized to ``hw`` when given; ``None`` when no message on
        ``topic`` has that stamp (within ``max_time_diff``), e.g. a frame the node dropped.
        """
        im_ref = self._pairs[index][0]
        lst = self._msgs[topic]
        j = nearest([m.stamp_ns for m in lst], im_ref.stamp_ns)
        if j is None or abs(lst[j].stamp_ns - im_ref.stamp_ns) > self.max_time_diff_ns:
            return None
        m = self._read(topic, lst[j])
        depth = decode_metres(self.path, m, topic, self.depth_scale)
        if hw is not None and depth.shape != tuple(hw):
            depth = geometry.resize_nearest(depth, hw)
        return depth

    def describe(self) -> str:
        s = self.stats
        if self.images_only:
            return f"rosbag2 {self.path}: {len(self)} frames ({self.image_topic}, images only)"
        return (f"rosbag2 {self.path}: {len(self)} frames ({self.image_topic} + {self.depth_topic}; "
                f"{s['paired']} paired, {s['unpaired_images']} images and {s['unpaired_depths']} depths unpaired)")

