"""The depth node's cameras (``cameras`` parameter): one :class:`CameraIO` each, with its own topics,
publishers, subscriptions, CameraInfo pairing, frame pacing, counters and output buffers.

``cameras: []`` (the default) is one camera at the node's own names (``image`` -> ``depth/image``...);
``cameras: [front, left]`` gives ``front/image`` -> ``front/depth/image`` and so on, all served by one
model (:mod:`moadepth_ros.node.worker` takes the oldest waiting frames first).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from moadepth_core.errors import ConfigError
from moadepth_ros import messages
from moadepth_ros.node.diagnostics import FrameStats
from moadepth_ros.node.pacing import FramePacer
from moadepth_ros.node.worker import CameraInfoHistory

#: A relative ROS name: tokens of letters, digits and underscores, not starting with a digit, joined by
#: single slashes, no double underscore (rcl's rules for a relative topic name).
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*")


def check_camera_names(names: Sequence[str]) -> list[str]:
    """``names`` as a list; ConfigError naming every invalid or repeated one."""
    names = [str(n) for n in names]
    bad = [n for n in names if not _NAME.fullmatch(n) or "__" in n]
    if bad:
        raise ConfigError(f"cameras {', '.join(repr(n) for n in bad)} {'is' if len(bad) == 1 else 'are'} not "
                          f"valid relative ROS names (letters, digits and '_', not starting with a digit, "
                          f"'/' between tokens, no '__')")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"cameras {', '.join(repr(n) for n in repeated)} listed more than once")
    return names


class CameraIO:
    """One camera's state; ``name`` "" is the single camera at the node's own names."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.stats = FrameStats()
        self.pacer = FramePacer()
        self.infos = CameraInfoHistory()
        self.buffers = messages.OutputBuffers()  # written in place by the worker, one set per camera
        self.last_stamp: int | None = None  # the newest image stamp (ns), to notice time going back
        self.last_seq: int | None = None  # the newest taken image's publication sequence number (intake)
        self.last_answered_stamp_ns: int | None = None
        self.io = None  # InputSubscriptions, while the node has its I/O
        self.depth_pub = self.info_pub = self.points_pub = self.conf_pub = self.colored_pub = None
        self.outputs: list = []

    def topic(self, relative: str) -> str:
        """``relative`` under this camera's name (``front/depth/image``), or as is for the single camera."""
        return f"{self.name}/{relative}" if self.name else relative

    def says(self, text: str) -> str:
        """A warning about this camera: prefixed with its name when there are several."""
        return f"camera {self.name}: {text}" if self.name else text

    def reset(self) -> None:
        """Forget the stream (a bag loop or a restart): CameraInfos, last stamp, pacing and the rate window."""
        self.infos.clear()
        self.last_stamp = None
        self.last_seq = None
        self.pacer.reset()
        self.stats.reset_window()
