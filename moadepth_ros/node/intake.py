"""The node's image intake: take a camera frame from DDS only when the worker can use it.

Why: a frame the executor takes is deserialised in Python (two copies of the image) whether the
worker uses it or not, and on a small CPU that work lands on the cores the network's threads need.
A 1080p camera at 30 Hz is 6 MB thirty times a second, of which a node running at 8-10 Hz uses one
in three or four (docs/PERFORMANCE.md, round thirteen). So the image subscriptions sit in an
:class:`IntakeGate`, a callback group the executor leaves out of its wait set while the network
runs. Their DDS readers keep only the newest sample (history depth 1), so when the gate opens at
the end of a forward the executor takes the camera's newest frame while the worker publishes the
last one's outputs, and never a stale queue.

What the node did not take is still accounted for: each image's ``publication_sequence_number``
says how many frames the camera sent since the previous one taken (counted as input and dropped,
and the pacer learns the camera's period from them), and its DDS reception time is the frame's
arrival, from which its age is measured.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup

#: History depth of the image subscriptions: the newest frame only (the worker never uses an older one).
IMAGE_HISTORY_DEPTH = 1
#: A sequence jump larger than this is a new publisher or a restarted camera, not frames skipped.
MAX_SKIPPED = 300


class IntakeGate(MutuallyExclusiveCallbackGroup):
    """The image subscriptions' callback group: the executor takes images only while it is open.

    ``wake`` makes the executor rebuild its wait set (``Executor.wake``), so a frame that arrived
    while the gate was closed is taken as soon as it opens.
    """

    def __init__(self, wake: Callable[[], None]) -> None:
        super().__init__()
        self._wake = wake
        self._closed = 0  # nesting depth: open when 0

    def can_execute(self, entity: Any) -> bool:
        return self._closed == 0 and super().can_execute(entity)

    @contextmanager
    def closed(self) -> Iterator[None]:
        """Closed for the duration of the block (the network's forward); reopened and the executor woken after."""
        self._closed += 1
        try:
            yield
        finally:
            self._closed -= 1
            if self._closed == 0:
                self._wake()


def frames_since(previous_seq: int | None, info: Mapping[str, Any] | None) -> tuple[int, int | None]:
    """(frames this image stands for: 1 plus those the camera sent since ``previous_seq`` that were not
    taken, this image's sequence number). Without a usable sequence number (no message info, an
    rmw that does not fill it, a new publisher) the image stands for itself alone."""
    seq = (info or {}).get("publication_sequence_number")
    if not isinstance(seq, int) or seq <= 0:
        return 1, None
    if previous_seq is None or not 0 < seq - previous_seq <= MAX_SKIPPED:
        return 1, seq
    return seq - previous_seq, seq


def arrival_time(info: Mapping[str, Any] | None, now: float, now_wall_ns: int | None = None) -> float:
    """The image's arrival on ``time.monotonic``'s clock: DDS's reception time (wall clock) moved onto
    it, so a frame that waited in the reader while the gate was closed is as old as it really is;
    ``now`` when the rmw gives no usable reception time."""
    received = (info or {}).get("received_timestamp")
    if not isinstance(received, int) or received <= 0:
        return now
    wall = time.time_ns() if now_wall_ns is None else now_wall_ns
    waited = (wall - received) / 1e9
    return now - waited if 0.0 <= waited <= 1.0 else now  # a clock step or a bogus stamp: trust now
