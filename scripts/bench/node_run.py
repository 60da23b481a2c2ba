"""depth_node as a subprocess, driven over DDS on loopback by ``moadepth_ros.dds_client.Client``
(the tests' client): publish times, answers, RSS, and the node's timing log joined per frame."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import ROOT
from .common import FRAME_HW, pct, test_frame

_RUNS = itertools.count()  # numbers each NodeRun of this process: its own namespace and client name


def _vm_hwm(pid: int) -> int:
    """A process's resident high-water mark in bytes (Linux), 0 when unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class NodeRun:
    """depth_node as a subprocess plus an in-process client (image + camera_info out, depth and points in)."""

    def __init__(self, checkpoint: Path, precision: str, extra_params: dict[str, str] | None = None,
                 frame_hw: tuple[int, int] = FRAME_HW) -> None:
        import psutil
        import rclpy

        from moadepth_core import geometry
        from moadepth_ros.dds_client import Client, Spinner, image_msg, info_msg

        self.ns = f"/bench{os.getpid()}_{next(_RUNS)}"  # several runs may be alive at once (node_resolutions)
        exe = Path(sys.executable).parent / "depth_node"  # this venv's: .venv-kilted/ under ROS_DISTRO=kilted
        if not exe.exists():
            exe = ROOT / ".venv" / "bin" / "depth_node"
        fd, timing_log = tempfile.mkstemp(prefix="moadepth-bench-timing-", suffix=".csv")
        os.close(fd)
        self.timing_log = Path(timing_log)
        params = {"checkpoint": str(checkpoint), "precision": precision, "device": "cpu",
                  "publish_points": "true", "points_rgb": "true", "timing_log": str(self.timing_log),
                  **(extra_params or {})}
        cmd = [str(exe), "--ros-args", "-r", f"__ns:={self.ns}"]
        for k, v in params.items():
            cmd += ["-p", f"{k}:={v}"]
        self.log = tempfile.NamedTemporaryFile("w+", prefix="depth_node-", suffix=".log", delete=False)
        self.t_spawn = time.monotonic()
        self.first_depth_s: float | None = None  # spawn -> first depth received (wait_ready)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=os.environ.copy())
        self.ps = psutil.Process(self.proc.pid)
        self.rss_samples: list[tuple[float, int]] = []
        self.child_peak_rss = 0  # the largest child's high-water mark seen while sampling
        if not rclpy.ok():
            rclpy.init()
        # Depth and points only, no messages kept: a frame's arrival is its (stamp, time.monotonic).
        self.client = Client(self.ns, name=f"moadepth_bench_{self.ns.strip('/')}", qos_depth=5, keep_messages=False,
                             outputs=("depth", "points"))
        self.lock = self.client.lock
        self.sent = self.client.sent  # stamp ns -> publish time (time.monotonic, as the node's timing log)
        self.depth_rx = self.client.arrivals["depth"]  # (stamp ns, receive time)
        self.spinner = Spinner(self.client)
        frame_id = "bench_camera_optical_frame"
        h, w = frame_hw
        self.img = image_msg(test_frame(frame_hw), 0, frame_id)
        f = 525.0 * w / 640  # the same field of view at every size
        K = geometry.intrinsics_matrix(f, f, (w - 1) / 2, (h - 1) / 2)
        self.info = info_msg(K, h, w, 0, frame_id)
        self.seq = 0

    @property
    def points_rx(self) -> int:
        return len(self.client.arrivals["points"])

    def frame_split(self, skip_s: float = 0.0) -> dict[str, list[float]]:
        """Per answered frame of the current drive (after ``skip_s``), milliseconds from publish to
        depth received, split by the node's timing log: transport in, the node's stages up to the
        depth message, transport out. Both processes stamp CLOCK_MONOTONIC, so the parts add up."""
        from moadepth_ros.node.diagnostics import STAGES, read_timing_log

        to_depth = STAGES[: STAGES.index("depth_out") + 1]  # the stages inside the depth latency

        try:
            rows = {r["stamp_ns"]: r for r in read_timing_log(self.timing_log)}
        except (OSError, KeyError, ValueError):
            return {}
        with self.lock:
            t0 = min(self.sent.values(), default=0.0)
            pairs = [(s, t) for s, t in self.depth_rx if s in self.sent and s in rows and self.sent[s] - t0 >= skip_s]
            sent = dict(self.sent)
        split: dict[str, list[float]] = {k: [] for k in ("latency", "transport_in", *to_depth, "transport_out")}
        for stamp, rx in pairs:
            row = rows[stamp]
            split["latency"].append((rx - sent[stamp]) * 1e3)
            split["transport_in"].append((row["received_s"] - sent[stamp]) * 1e3)
            for k in to_depth:
                split[k].append(row[f"{k}_ms"])
            split["transport_out"].append((rx - row["depth_published_s"]) * 1e3)
        return split

    def worker_samples(self, skip_s: float = 0.0) -> dict[str, list[float]]:
        """Every stage of the node's worker (the outputs after depth included), ms per frame, and
        ``cycle``: the intervals between depth publications, over the current drive (after ``skip_s``)."""
        from moadepth_ros.node.diagnostics import STAGES, read_timing_log

        try:
            rows = read_timing_log(self.timing_log)
        except (OSError, KeyError, ValueError):
            return {}
        with self.lock:
            t0 = min(self.sent.values(), default=0.0)
            rows = [r for r in rows if r["stamp_ns"] in self.sent and self.sent[r["stamp_ns"]] - t0 >= skip_s]
        if len(rows) < 3:
            return {}
        out = {s: [r[f"{s}_ms"] for r in rows if r.get(f"{s}_ms") is not None] for s in STAGES}
        published = sorted(r["depth_published_s"] for r in rows)
        out["cycle"] = [(b - a) * 1e3 for a, b in itertools.pairwise(published)]
        return {k: v for k, v in out.items() if v}

    def worker_cycle(self, skip_s: float = 0.0) -> dict[str, float]:
        """p50 of :meth:`worker_samples`: what bounds the output rate."""
        return {k: round(pct(v, 50), 2) for k, v in self.worker_samples(skip_s).items()}

    def sample_rss(self) -> int:
        import psutil

        try:
            children = self.ps.children(recursive=True)
            rss = sum(p.memory_info().rss for p in [self.ps, *children])
        except psutil.Error:
            return 0
        for child in children:  # e.g. the graph export's child interpreter on a first start
            self.child_peak_rss = max(self.child_peak_rss, _vm_hwm(child.pid))
        self.rss_samples.append((time.perf_counter(), rss))
        return rss

    def peak_rss(self) -> int:
        """Kernel high-water mark (VmHWM) when readable: catches peaks between samples."""
        return _vm_hwm(self.proc.pid) or max((r for _, r in self.rss_samples), default=0)

    def publish(self) -> int:
        """Publish one frame (+ CameraInfo) stamped with a unique ns value; returns the stamp."""
        self.seq += 1
        now = time.time_ns() // 1000 * 1000 + self.seq % 1000  # unique even within one microsecond
        self.client.publish(self.img, self.info, now)
        return now

    def wait_ready(self, timeout: float) -> bool:
        """Publish at 2 Hz until the first depth image comes back (model load + DDS discovery)."""
        end = time.perf_counter() + timeout
        while time.perf_counter() < end:
            if self.proc.poll() is not None:
                return False
            self.publish()
            self.sample_rss()
            time.sleep(0.5)
            with self.lock:
                if self.depth_rx:
                    self.first_depth_s = self.depth_rx[0][1] - self.t_spawn
                    return True
        return False

    def drive(self, rate_hz: float, duration_s: float | None = None, frames: int | None = None) -> tuple[int, int]:
        """Publish at ``rate_hz`` for a time or a frame count.

        ``rate_hz`` 0: back to back (a flood, most frames dropped by the node's latest-frame slot);
        negative: closed loop at the node's own maximum rate (the next frame goes out once all
        but one are answered), so every frame is processed.
        """
        self.client.clear()
        period = 1.0 / rate_hz if rate_hz > 0 else 0.0
        start = time.perf_counter()
        next_t = start
        n = 0
        prev = None  # stamp of the previous frame (closed loop)
        last_rss = 0.0
        while True:
            if duration_s is not None and time.perf_counter() - start >= duration_s:
                break
            if frames is not None and n >= frames:
                break
            stamp = self.publish()
            n += 1
            now = time.perf_counter()
            if now - last_rss > 0.5:
                self.sample_rss()
                last_rss = now
            if rate_hz < 0:  # closed loop: keep the node busy (one frame running, one pending)
                wait_until = time.perf_counter() + 0.25  # a slow DDS repair must not stall the run
                while time.perf_counter() < wait_until:
                    with self.lock:
                        # the previous frame answered, or superseded by a newer answer (the node's
                        # latest-frame slot may drop it): counting answers would stall after a drop
                        if prev is None or (self.depth_rx and self.depth_rx[-1][0] >= prev):
                            break
                    time.sleep(0.001)
                prev = stamp
            elif period:
                next_t += period
                delay = next_t - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                else:
                    next_t = time.perf_counter()
            elif rate_hz == 0:
                time.sleep(0.002)  # leave the GIL to the spinning executor
        return n, int((time.perf_counter() - start) * 1e9)

    def latencies(self, skip_s: float = 0.0) -> tuple[list[float], list[float]]:
        """(latencies ms of answered frames, receive times) for frames published after ``skip_s``."""
        with self.lock:
            t0 = min(self.sent.values(), default=0.0)
            lat, rx = [], []
            for stamp, t in self.depth_rx:
                if stamp in self.sent and self.sent[stamp] - t0 >= skip_s:
                    lat.append((t - self.sent[stamp]) * 1e3)
                    rx.append(t)
        return lat, rx

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.spinner.close()
        self.client.destroy_node()
        self.log.close()
        self.timing_log.unlink(missing_ok=True)

    def log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(Path(self.log.name).read_text().splitlines()[-n:])
        except OSError:
            return ""

    def started_from_cache(self) -> bool:
        """Whether the node says it started from a cached graph without torch (its log)."""
        try:
            return "started from the graph cached" in Path(self.log.name).read_text()
        except OSError:
            return False
