"""Input messages -> the frame the node infers on: validation and decoding of raw and compressed images.

Every problem with a message ends in one :class:`~moadepth_core.errors.DataError` sentence, which the
node logs (rate-limited) before it skips the frame.
"""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from moadepth_core.errors import DataError
from moadepth_ros import messages

#: Largest image side accepted: far beyond any camera, small enough to refuse corrupt headers early.
MAX_IMAGE_SIDE = 16384


def frame_from_image(msg: Image) -> np.ndarray:
    """Validate an Image and return it as HxWx3 uint8 RGB; any problem raises :class:`DataError`.

    This is the node's whole validation/conversion layer for images (property-tested with random
    messages): unsupported encodings, short data, step < row, empty or absurd sizes and 16-bit or
    float images on the colour topic all end here with one sentence.
    """
    if msg.height > MAX_IMAGE_SIDE or msg.width > MAX_IMAGE_SIDE:
        raise DataError(f"{msg.encoding} image size {msg.width}x{msg.height} exceeds {MAX_IMAGE_SIDE} "
                        f"pixels per side")
    return messages.image_to_rgb8(msg)


def frame_from_compressed(msg: CompressedImage) -> np.ndarray:
    """HxWx3 uint8 RGB of a CompressedImage (image_transport's compressed plugin); DataError names the
    problem (unknown format, corrupt or truncated stream, absurd size)."""
    rgb = messages.compressed_to_rgb8(msg)
    if rgb.shape[0] > MAX_IMAGE_SIDE or rgb.shape[1] > MAX_IMAGE_SIDE:
        raise DataError(f"compressed image size {rgb.shape[1]}x{rgb.shape[0]} exceeds {MAX_IMAGE_SIDE} "
                        f"pixels per side")
    return rgb
