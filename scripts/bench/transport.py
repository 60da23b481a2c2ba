"""Stage ``transport``: DDS transport alone, publish -> callback between two rclpy processes for the node's
input (640x480 rgb8) and output (640x480 32FC1) and a tiny message, nothing else running.

The receiving process is this package run again with ``--transport-echo`` (see suite.main)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .common import FRAME_HW, pct

PACKAGE_DIR = Path(__file__).resolve().parent  # ``python PACKAGE_DIR`` runs the bench's __main__


TRANSPORT_KINDS = {  # what depth_node receives and sends per frame, plus a tiny message for the fixed cost
    "tiny": ((4, 4), "rgb8"),
    "image": (FRAME_HW, "rgb8"),
    "depth": (FRAME_HW, "32FC1"),
}


def transport_echo(ns: str, seconds: float) -> None:
    """Child process of the transport stage: a plain rclpy node spun like depth_node's, recording
    publish -> callback per message (stamps carry the sender's CLOCK_MONOTONIC, shared by all
    processes), then printing one JSON line of medians."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node(f"moadepth_bench_echo_{os.getpid()}")
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    lat: dict[str, list[float]] = {k: [] for k in TRANSPORT_KINDS}

    def on_msg(kind: str, msg: Image) -> None:
        now = time.monotonic_ns()
        lat[kind].append((now - (msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)) / 1e6)

    for kind in TRANSPORT_KINDS:
        node.create_subscription(Image, f"{ns}/floor/{kind}", lambda m, k=kind: on_msg(k, m), qos)
    end = time.monotonic() + seconds
    while time.monotonic() < end and rclpy.ok():
        rclpy.spin_once(node, timeout_sec=0.05)
    print(json.dumps({k: {"n": len(v), "p50": pct(v[10:], 50), "p90": pct(v[10:], 90)} for k, v in lat.items()}),
          flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


def stage_transport(res: dict, count: int = 80, rate_hz: float = 25.0) -> None:
    """DDS transport under the node's overhead: publish -> callback between two rclpy processes for
    the node's own input (640x480 rgb8) and output (640x480 32FC1), same transport profile,
    nothing else running. Image hop + depth hop is what the overhead target must also pay for DDS;
    it moves with load (idle cores wake slower), so read it as a scale, not a strict bound."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from moadepth_ros import messages

    ns = f"/bench{os.getpid()}"
    seconds = 6.0 + len(TRANSPORT_KINDS) * count / rate_hz
    child = subprocess.Popen([sys.executable, str(PACKAGE_DIR), "--transport-echo", ns, str(seconds)],
                             stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    if not rclpy.ok():
        rclpy.init()
    node = rclpy.create_node(f"moadepth_bench_src_{os.getpid()}")
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    rng = np.random.default_rng(0)
    try:
        pubs, msgs = {}, {}
        for kind, (hw, enc) in TRANSPORT_KINDS.items():
            pubs[kind] = node.create_publisher(Image, f"{ns}/floor/{kind}", qos)
            arr = (rng.integers(0, 255, (*hw, 3), dtype=np.uint8) if enc == "rgb8"
                   else rng.uniform(0.5, 20, hw).astype(np.float32))
            msgs[kind] = messages.numpy_to_image(arr, enc)
        # The echo child imports the bench, torch included, which takes seconds on a loaded machine:
        # publishing before it subscribed lost the first kind's messages (docs/PERFORMANCE.md).
        deadline = time.monotonic() + 60.0
        while any(p.get_subscription_count() == 0 for p in pubs.values()):
            if child.poll() is not None:
                raise RuntimeError(f"transport: the echo process exited (code {child.returncode}) before subscribing")
            if time.monotonic() > deadline:
                raise RuntimeError("transport: the echo process did not subscribe within 60 s")
            time.sleep(0.05)
        time.sleep(0.5)
        for kind, pub in pubs.items():
            msg = msgs[kind]
            for _ in range(count):
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(time.monotonic_ns(), 1_000_000_000)
                pub.publish(msg)
                time.sleep(1.0 / rate_hz)
        out, _ = child.communicate(timeout=seconds + 30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)
        node.destroy_node()
    got = json.loads(out.strip().splitlines()[-1])
    res["details"]["transport_ms"] = got
    for kind, v in got.items():
        if v["n"] < count // 2:
            raise RuntimeError(f"transport: only {v['n']} of {count} {kind} messages arrived")
        res[f"transport_{kind}_ms"] = round(v["p50"], 2)
    res["transport_in_out_ms"] = round(got["image"]["p50"] + got["depth"]["p50"], 2)
    print(f"  publish -> callback p50: tiny {got['tiny']['p50']:.2f} ms, 640x480 rgb8 {got['image']['p50']:.2f} ms, "
          f"640x480 32FC1 {got['depth']['p50']:.2f} ms; image in + depth out {res['transport_in_out_ms']} ms",
          flush=True)

