"""When a busy depth worker frees up: process the newest frame now, or wait for the next one.

A worker slower than its camera that always takes the newest frame starts on it, on average, half
a camera period after it arrived (its cycle and the camera's are unrelated, so the frame's age is
uniform over one period). That age is pure latency: the depth it gives describes a scene that old.

``fresh`` waits for the next frame when it is due sooner than the waiting one is old, i.e. when
the newest frame is more than half a period old. Each such wait costs the worker less idle time
than it takes off the depth's age, so latency drops a lot (mean age about T/8 instead of T/2)
and the output rate only a little (mean idle about T/8 per cycle). ``latest`` never waits: the
most frames out, each up to a period old. The rule needs no clock but the frames' arrival times,
so it is plain Python, testable without ROS or a camera.
"""

from __future__ import annotations

from collections import deque

import numpy as np

POLICIES = ("fresh", "latest")
MIN_INTERVALS = 4  # arrivals needed before the camera's period is trusted
JITTER_SHARE = 0.25  # how long past its due time (in periods) the next frame is still waited for


class FramePacer:
    """Learns the camera's period from arrival times and says how long to wait for a fresher frame."""

    def __init__(self, history: int = 16) -> None:
        self._last: float | None = None
        self._gaps: deque[float] = deque(maxlen=history)  # seconds per frame between taken frames

    def arrived(self, t: float, frames: int = 1) -> None:
        """A frame arrived at ``t`` (seconds on a monotonic clock), the ``frames``-th since the previous
        one the node took (frames the camera sent while the node's intake was closed count too)."""
        if self._last is not None and t < self._last:
            self.reset()  # a clock that went back: start over rather than learn nonsense
        if self._last is not None:
            self._gaps.append((float(t) - self._last) / max(1, int(frames)))
        self._last = float(t)

    def reset(self) -> None:
        """Forget the period (the stream restarted)."""
        self._last = None
        self._gaps.clear()

    def period(self) -> float | None:
        """The camera's period (s): the median of recent arrival intervals, robust to one late frame."""
        if len(self._gaps) < MIN_INTERVALS:
            return None
        period = float(np.median(np.fromiter(self._gaps, dtype=np.float64)))
        return period if period > 0 else None

    def wait_for_next(self, age_s: float, policy: str = "fresh") -> float:
        """Seconds to wait for the next frame instead of processing one ``age_s`` old; 0: take it now.

        The budget covers the next frame's due time plus a quarter period of jitter; a frame that
        does not come by then means the camera stalled, and the waiting one is processed after all.
        """
        if policy not in POLICIES:
            raise ValueError(f"frame policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        if policy == "latest":
            return 0.0
        period = self.period()
        if period is None or age_s <= period / 2:
            return 0.0
        due = period - age_s
        if due <= 0:  # the next frame is already late: the camera slowed down or stopped
            return 0.0
        return due + JITTER_SHARE * period
