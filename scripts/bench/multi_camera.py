"""Stage ``multi_camera``: three cameras of 640x480 rgb8 at 30 Hz each, points on, defaults otherwise, served
by one depth_node (``cameras: [c0, c1, c2]``) against three single-camera depth_node processes, same
machine, same run (issue 21).

Keys: ``multi_camera_aggregate_hz``, ``multi_camera_per_camera_hz`` (one figure per camera),
``multi_camera_rss_mb``, ``three_processes_aggregate_hz``, ``three_processes_rss_mb`` (resident
high-water marks summed over the node processes), and the ratios the issue's targets read.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import ROOT
from .common import FRAME_HW, make_checkpoint, test_frame
from .node_run import _vm_hwm

CAMERAS = ("c0", "c1", "c2")


def _spawn(checkpoint: Path, ns: str, precision: str, cameras: tuple[str, ...]) -> tuple[subprocess.Popen, Path]:
    exe = ROOT / ".venv" / "bin" / "depth_node"
    if not exe.exists():
        exe = Path(sys.executable).parent / "depth_node"
    cmd = [str(exe), "--ros-args", "-r", f"__ns:={ns}", "-p", f"checkpoint:={checkpoint}", "-p", "device:=cpu",
           "-p", f"precision:={precision}", "-p", "publish_points:=true"]
    if cameras:
        cmd += ["-p", f"cameras:=[{', '.join(cameras)}]"]
    log = Path(tempfile.mkstemp(prefix="depth_node-multi-", suffix=".log")[1])
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=os.environ.copy())
    return proc, log


def _run(checkpoint: Path, layout: list[tuple[str, tuple[str, ...]]], precision: str, duration_s: float,
         rate_hz: float) -> dict:
    """Start the node processes of ``layout`` ((namespace, cameras) each), drive every camera at ``rate_hz``
    for ``duration_s`` and return the per-camera output rates and the processes' summed peak RSS."""
    import rclpy

    from moadepth_core import geometry
    from moadepth_ros.dds_client import Client, Spinner, image_msg, info_msg

    if not rclpy.ok():
        rclpy.init()
    h, w = FRAME_HW
    img = image_msg(test_frame(), 0, "bench_camera_optical_frame")
    info = info_msg(geometry.intrinsics_matrix(525.0, 525.0, (w - 1) / 2, (h - 1) / 2), h, w, 0,
                    "bench_camera_optical_frame")
    procs = [_spawn(checkpoint, ns, precision, cams) for ns, cams in layout]
    prefixes = [f"{ns}/{c}" if cams else ns for ns, cams in layout for c in (cams or ("",))]
    clients = [Client(p, name=f"bench_multi_{os.getpid()}_{i}", qos_depth=5, keep_messages=False,
                      outputs=("depth", "points")) for i, p in enumerate(prefixes)]
    spinner = Spinner(*clients)
    seq = 0

    def publish_all() -> None:
        nonlocal seq
        for c in clients:
            seq += 1
            c.publish(img, info, time.time_ns() // 1000 * 1000 + seq % 1000)

    try:
        end = time.monotonic() + 300.0  # first start exports the graph; the others read the cache
        while time.monotonic() < end and not all(c.stamps("depth") for c in clients):
            if any(p.poll() is not None for p, _ in procs):
                raise RuntimeError("a depth_node exited: " + " | ".join(log.read_text()[-400:] for _, log in procs))
            publish_all()
            time.sleep(0.5)
        if not all(c.stamps("depth") for c in clients):
            raise RuntimeError("no depth from every camera within 300 s")
        for c in clients:
            c.clear()
        start = time.monotonic()
        next_t = start
        while time.monotonic() - start < duration_s:
            publish_all()
            next_t += 1.0 / rate_hz
            time.sleep(max(0.0, next_t - time.monotonic()))
        time.sleep(1.0)
        skip = 2.0 if duration_s > 4.0 else 0.0
        per_camera = []
        for c in clients:
            with c.lock:
                rx = [t for _, t in c.arrivals["depth"] if t - start >= skip]
            per_camera.append(round(len(rx) / max(duration_s - skip, 1e-9), 2))
        rss = sum(_vm_hwm(p.pid) for p, _ in procs)
        return {"per_camera_hz": per_camera, "aggregate_hz": round(sum(per_camera), 2),
                "rss_mb": round(rss / 2**20, 1)}
    finally:
        for p, log in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
            log.unlink(missing_ok=True)
        spinner.close()
        for c in clients:
            c.destroy_node()


def stage_multi_camera(res: dict, tmp: Path, duration_s: float, rate_hz: float) -> None:
    ckpt = make_checkpoint(tmp)
    precision = res["node_precision"]
    one = _run(ckpt, [(f"/benchmc{os.getpid()}", CAMERAS)], precision, duration_s, rate_hz)
    three = _run(ckpt, [(f"/bench3p{os.getpid()}_{k}", ()) for k in range(3)], precision, duration_s, rate_hz)
    res["multi_camera_aggregate_hz"] = one["aggregate_hz"]
    res["multi_camera_per_camera_hz"] = one["per_camera_hz"]
    res["multi_camera_rss_mb"] = one["rss_mb"]
    res["three_processes_aggregate_hz"] = three["aggregate_hz"]
    res["three_processes_per_camera_hz"] = three["per_camera_hz"]
    res["three_processes_rss_mb"] = three["rss_mb"]
    if three["aggregate_hz"] > 0:
        res["multi_camera_rate_ratio"] = round(one["aggregate_hz"] / three["aggregate_hz"], 2)
    if three["rss_mb"] > 0:
        res["multi_camera_rss_ratio"] = round(one["rss_mb"] / three["rss_mb"], 2)
    if one["aggregate_hz"] > 0:
        res["multi_camera_min_share"] = round(min(one["per_camera_hz"]) / one["aggregate_hz"], 3)
    res["details"]["multi_camera"] = {"one_process": one, "three_processes": three, "input_hz_per_camera": rate_hz,
                                      "duration_s": duration_s}
    print(f"  one process, 3 cameras: {one['aggregate_hz']} Hz in all ({one['per_camera_hz']}), RSS "
          f"{one['rss_mb']} MB; three processes: {three['aggregate_hz']} Hz ({three['per_camera_hz']}), RSS "
          f"{three['rss_mb']} MB", flush=True)
