"""Rate, latency and drop statistics for the depth node, as diagnostic_msgs.

Kept apart from the node so the windowing is testable without DDS; the node feeds it events
(monotonic seconds) and publishes :meth:`FrameStats.status` on ``/diagnostics``.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue


class FrameStats:
    """Thread-safe counters plus a sliding window (``window_s``) of input/output times and latencies."""

    def __init__(self, window_s: float = 5.0, max_samples: int = 1000) -> None:
        self.window_s = float(window_s)
        self._lock = threading.Lock()
        self._inputs: deque[float] = deque(maxlen=max_samples)
        self._outputs: deque[tuple[float, float]] = deque(maxlen=max_samples)  # (time, latency)
        self._stages: deque[tuple[float, dict[str, float]]] = deque(maxlen=max_samples)  # (time, stage -> s)
        self.frames_in = 0
        self.frames_out = 0
        self.dropped = 0
        self.rejected = 0
        self.skipped = 0

    def reset_window(self) -> None:
        """Forget rates and latencies (a stamp jump restarts them); totals are kept."""
        with self._lock:
            self._inputs.clear()
            self._outputs.clear()
            self._stages.clear()

    def input(self, now: float | None = None) -> None:
        with self._lock:
            self.frames_in += 1
            self._inputs.append(time.monotonic() if now is None else now)

    def output(self, latency_s: float, now: float | None = None, stages: dict[str, float] | None = None) -> None:
        """One answered frame: its latency and, optionally, seconds per stage (where the time went)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self.frames_out += 1
            self._outputs.append((now, float(latency_s)))
            if stages:
                self._stages.append((now, dict(stages)))

    def count(self, what: str) -> None:
        """Increment one of ``dropped``, ``rejected`` or ``skipped``."""
        with self._lock:
            setattr(self, what, getattr(self, what) + 1)

    def summary(self, now: float | None = None) -> dict[str, float]:
        """Rates (Hz) and latency percentiles (ms) over the window, plus the totals."""
        now = time.monotonic() if now is None else now
        with self._lock:
            t_in = [t for t in self._inputs if now - t <= self.window_s]
            outs = [(t, lat) for t, lat in self._outputs if now - t <= self.window_s]
            stages = [st for t, st in self._stages if now - t <= self.window_s]
            totals = dict(frames_in=self.frames_in, frames_out=self.frames_out, dropped=self.dropped,
                          rejected=self.rejected, skipped_no_subscribers=self.skipped)
        lat = np.array([lat for _, lat in outs]) * 1000.0
        names = list(dict.fromkeys(k for st in stages for k in st))  # first-seen order = pipeline order
        per_stage = {f"stage_{k}_p50_ms": float(np.median([st[k] for st in stages if k in st])) * 1000.0
                     for k in names}
        return {
            "input_rate_hz": _rate(t_in),
            "output_rate_hz": _rate([t for t, _ in outs]),
            "latency_p50_ms": float(np.percentile(lat, 50)) if lat.size else float("nan"),
            "latency_p95_ms": float(np.percentile(lat, 95)) if lat.size else float("nan"),
            **per_stage,
            **totals,
        }

    def status(self, name: str, hardware_id: str, info: dict[str, str], *, level: int = DiagnosticStatus.OK,
               message: str = "running") -> DiagnosticStatus:
        """A DiagnosticStatus with the summary and ``info`` (device, precision, checkpoint...) as values."""
        values = {k: (f"{v:.3f}" if isinstance(v, float) else str(v)) for k, v in self.summary().items()}
        values.update({k: str(v) for k, v in info.items()})
        return DiagnosticStatus(level=level, name=name, hardware_id=hardware_id, message=message,
                                values=[KeyValue(key=k, value=v) for k, v in values.items()])


def _rate(times: list[float]) -> float:
    if len(times) < 2:
        return 0.0
    span = times[-1] - times[0]
    return (len(times) - 1) / span if span > 0 else 0.0
