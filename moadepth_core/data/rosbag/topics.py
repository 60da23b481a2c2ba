"""Which topics of a bag hold the images, depth and CameraInfo: a topic the user named is checked, an
unnamed one is the only topic of the right type named like it (``color``/``rgb``, ``depth``), and
CameraInfo defaults to the image_transport sibling. Every miss is a :class:`DataError` listing the
bag's topics.
"""

from __future__ import annotations

from pathlib import Path

from moadepth_core.data.rosbag.messages import CAMERA_INFO_TYPE, IMAGE_TYPE, IMAGE_TYPES, camera_topic_sibling
from moadepth_core.errors import DataError


def topic_list(topics: dict[str, str]) -> str:
    """``topic (type), ...`` sorted, for error messages."""
    return ", ".join(f"{t} ({m})" for t, m in sorted(topics.items())) or "none"


def missing_topic(path: Path, topics: dict[str, str], what: str, topic: str | None, hint: str = "") -> DataError:
    """The error for a ``what`` topic the bag at ``path`` does not have (``topic`` None: none unambiguous)."""
    name = f"no {what} topic {topic!r}" if topic else f"no unambiguous {what} topic"
    return DataError(f"bag {path} has {name}{hint}; its topics are: {topic_list(topics)}")


def pick_topic(path: Path, topics: dict[str, str], given: str | None, what: str, words: tuple[str, ...],
               required: bool, msgtype: str | tuple[str, ...] = IMAGE_TYPES,
               avoid: tuple[str, ...] = ()) -> str | None:
    """``given`` checked, else the only topic of ``msgtype`` named like ``words``. Images and depth
    may be raw or image_transport's compressed/compressedDepth (CompressedImage); where both are
    recorded, the raw one is picked."""
    types = (msgtype,) if isinstance(msgtype, str) else msgtype
    if given:
        if given not in topics:
            raise missing_topic(path, topics, what, given)
        if topics[given] not in types:
            raise DataError(f"bag {path}: {what} topic {given} holds {topics[given]}, not "
                            f"{' or '.join(types)}")
        return given
    cands = [t for t, m in topics.items() if m in types and any(w in t.lower() for w in words)
             and not any(a in t.lower() for a in avoid)]
    if len(cands) > 1:  # raw first; then, for depth, compressedDepth over a JPEG of it
        raw = [t for t in cands if topics[t] == IMAGE_TYPE]
        if not raw and what == "depth":
            raw = [t for t in cands if t.lower().endswith("compresseddepth")]
        cands = raw or cands
    if len(cands) == 1:
        return cands[0]
    if required:
        raise missing_topic(path, topics, what, None, " (pass it explicitly)")
    return None


def info_sibling(image_topic: str, topics: dict[str, str]) -> str | None:
    """The CameraInfo topic next to ``image_topic``, if the bag has it."""
    t = camera_topic_sibling(image_topic, msgtype=topics.get(image_topic, IMAGE_TYPE))
    return t if topics.get(t) == CAMERA_INFO_TYPE else None
