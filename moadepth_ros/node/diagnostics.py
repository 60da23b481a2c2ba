"""Rate, latency and drop statistics for the depth node, as diagnostic_msgs.

Kept apart from the node so the windowing is testable without DDS; the node feeds it events
(monotonic seconds) and publishes :meth:`FrameStats.status` on ``/diagnostics``.
"""

from __future__ import annotations

import csv
import re
import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from moadepth_core.errors import ConfigError

#: The node's stages in pipeline order (``stage_<name>_p50_ms`` on /diagnostics, columns of the timing log).
STAGES = ("wait", "preprocess", "forward", "postprocess", "depth_out", "confidence_out", "points_out")


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
        self.waited = 0  # frames set aside for a fresher one due soon (frame_policy fresh)

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
        """Increment one of ``dropped``, ``rejected``, ``skipped`` or ``waited``."""
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
                          rejected=self.rejected, skipped_no_subscribers=self.skipped,
                          waited_for_fresher=self.waited)
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


class ProblemLog:
    """Counts every problem by kind and decides which get a log line: one per problem, repeated at
    most every ``period`` seconds.

    The rate limit keys on the sentence with its numbers masked, so a camera sending the same bad
    frame at 30 Hz logs once per period while a different problem still gets its own line.
    """

    def __init__(self, max_lines: int = 200) -> None:
        self.problems: Counter[str] = Counter()  # every problem seen, by kind (logged or not)
        self.lines: deque[tuple[str, str]] = deque(maxlen=max_lines)  # (kind, line) actually logged
        self._lock = threading.Lock()
        self._last_logged: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def note(self, kind: str, text: str, period: float, now: float | None = None) -> str | None:
        """Count the problem; return the line to log now (with how many were suppressed), or None."""
        key = kind + ":" + re.sub(r"[-+]?\d[\d.e+-]*", "#", text)
        now = time.monotonic() if now is None else now
        with self._lock:
            self.problems[kind] += 1
            last = self._last_logged.get(key)
            if last is not None and now - last < period:
                self._suppressed[key] += 1
                return None
            if len(self._last_logged) > 1000:  # random garbage must not grow this forever
                self._last_logged.clear()
                self._suppressed.clear()
            self._last_logged[key] = now
            n = self._suppressed.pop(key, 0)
            line = text + (f" ({n} similar messages suppressed)" if n else "")
            self.lines.append((kind, line))
        return line


def node_status(name: str, stats: FrameStats, estimator: Any, cfg: dict[str, Any], active: bool,
                problems: Counter[str], warnings: list[str] | tuple[str, ...] = (),
                extra: dict[str, str] | None = None) -> DiagnosticStatus:
    """The node's DiagnosticStatus: ERROR for an untrained network (it must never feed a costmap
    unnoticed), else WARN with the current ``warnings`` (an input or output that cannot connect), else
    OK with "running" or "inactive"; the model's settings, ``extra`` and problem counts as values."""
    est = estimator
    info = {
        "device": str(est.device) if est else cfg["device"],
        "precision": est.precision if est else cfg["precision"],
        "backend": est.backend if est else cfg["backend"],
        "checkpoint": (est.checkpoint_path or "(untrained)") if est else (cfg["checkpoint"] or "(none)"),
        "model_loaded": str(est is not None),
        "active": str(active),
        "problems": ", ".join(f"{k}={v}" for k, v in sorted(problems.items())) or "none",
        **(extra or {}),
    }
    if est is not None and est.untrained:
        level, message = DiagnosticStatus.ERROR, "UNTRAINED network: depth is meaningless, do not use it"
    elif warnings:
        level, message = DiagnosticStatus.WARN, " | ".join(warnings)
    elif est is None or not active:
        level, message = DiagnosticStatus.OK, "inactive"
    else:
        level, message = DiagnosticStatus.OK, "running"
    return stats.status(name, info["device"], info, level=level, message=message)


def _rate(times: list[float]) -> float:
    if len(times) < 2:
        return 0.0
    span = times[-1] - times[0]
    return (len(times) - 1) / span if span > 0 else 0.0


class TimingLog:
    """One CSV row per answered frame (the node's ``timing_log`` parameter), for profiling.

    /diagnostics gives medians per stage over a window; medians of parts do not add up to the
    median of the whole, and a window can span two loads. A per-frame row can be joined with the
    sender's own clock: ``received_s`` and ``depth_published_s`` are CLOCK_MONOTONIC
    (``time.monotonic()``), shared by every process on the machine, so a camera or benchmark
    that notes its publish time gets transport in and out per frame.
    """

    COLUMNS = ("stamp_ns", "received_s", "depth_published_s", *(f"{s}_ms" for s in STAGES))

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        try:
            self._file = self.path.open("a", newline="", buffering=1)
        except OSError as exc:
            raise ConfigError(f"cannot write the timing log {self.path}: {exc.strerror or exc}") from None
        self._lock = threading.Lock()
        self._csv = csv.writer(self._file)
        if self._file.tell() == 0:
            self._csv.writerow(self.COLUMNS)

    def write(self, stamp_ns: int, received_s: float, depth_published_s: float, stages: dict[str, float]) -> None:
        """``stages`` in seconds, as the node measures them; a stage that did not run stays empty."""
        row = [stamp_ns, f"{received_s:.6f}", f"{depth_published_s:.6f}"]
        row += [f"{stages[s] * 1000.0:.3f}" if s in stages else "" for s in STAGES]
        with self._lock:
            if not self._file.closed:
                self._csv.writerow(row)

    def close(self) -> None:
        with self._lock:
            self._file.close()


def read_timing_log(path: str | Path) -> list[dict[str, float]]:
    """The rows of a timing log as dicts of floats (``stamp_ns`` as int); empty stages are left out."""
    rows = []
    with Path(path).open(newline="") as f:
        for rec in csv.DictReader(f):
            row: dict[str, float] = {k: float(v) for k, v in rec.items() if v not in ("", None)}
            row["stamp_ns"] = int(rec["stamp_ns"])
            rows.append(row)
    return rows
