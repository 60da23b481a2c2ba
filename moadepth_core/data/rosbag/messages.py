"""What rosbag2 camera messages look like to the reader: type names, the header read straight
from CDR bytes, and the image_transport topic convention."""

from __future__ import annotations

import struct

from moadepth_core.errors import DataError

IMAGE_TYPE = "sensor_msgs/msg/Image"
#: image_transport's compressed and compressedDepth topics (``.../compressed``, ``.../compressedDepth``)
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
TF_TYPES = ("tf2_msgs/msg/TFMessage",)


def header_from_cdr(raw: bytes | memoryview) -> tuple[int, str]:
    """(stamp in ns, frame_id) of any message that starts with std_msgs/Header, from its CDR bytes.

    Reads 4 + 8 + 4 + len bytes instead of deserialising a whole image just to learn its stamp.
    """
    raw = memoryview(raw)
    if len(raw) < 16:
        raise DataError(f"message of {len(raw)} bytes is too short to hold a header")
    endian = "<" if raw[1] & 1 else ">"
    sec, nsec, n = struct.unpack_from(endian + "iII", raw, 4)
    if n > len(raw) - 16:
        raise DataError("message header has a frame_id longer than the message")
    frame = bytes(raw[16:16 + n]).split(b"\0", 1)[0].decode("utf-8", errors="replace")
    return sec * 1_000_000_000 + nsec, frame


def base_image_topic(topic: str, msgtype: str) -> str:
    """The raw image topic a transport topic belongs to: ``/cam/image_raw/compressed`` -> ``/cam/image_raw``
    for a CompressedImage (image_transport names ``<base>/<transport>``); other topics as they are."""
    return topic.rpartition("/")[0] if msgtype == COMPRESSED_TYPE and topic.count("/") > 1 else topic


def camera_topic_sibling(image_topic: str, leaf: str = "camera_info", msgtype: str = IMAGE_TYPE) -> str:
    """``/camera/color/image_raw`` (or its ``/compressed`` transport) -> ``/camera/color/camera_info``
    (the image_transport convention)."""
    head, _, _ = base_image_topic(image_topic, msgtype).rpartition("/")
    return f"{head}/{leaf}"
