"""Stages ``node``, ``node_compiled``, ``node_onnxruntime_int8``, ``node_latest``, ``node_torch``,
``node_onnxruntime``: depth_node over DDS on loopback, 640x480 rgb8 at 30 Hz, points on.

Output rate, latency p50/p95 (publish -> depth received), overhead vs the raw forward, peak RSS, and
each frame's latency split (transport in, node stages, transport out) from the node's timing log."""

from __future__ import annotations

import time
from pathlib import Path

from .common import make_checkpoint, pct, test_frame, timed
from .node_run import NodeRun


def stage_node(res: dict, tmp: Path, duration_s: float, rate_hz: float, backend: str = "auto",
               precision: str | None = None, frame_policy: str = "fresh") -> None:
    """depth_node end to end at ``precision`` (default ``res["node_precision"]``, fp32 for onnxruntime);
    backend auto (the node's default) writes the plain keys and ``node_backend``, others get a
    ``_<backend>`` suffix, plus ``_int8`` for int8 and ``_latest`` for frame_policy latest."""
    from moadepth_core.runtime.torch.estimator import DepthEstimator

    suffix = ("" if backend == "auto" else f"_{backend}") + ("_int8" if precision == "int8" else "") + \
        ("_latest" if frame_policy == "latest" else "")
    ckpt = make_checkpoint(tmp)
    # The overhead ratio's denominator: the raw forward of the same checkpoint, same threads, precision,
    # same backend, timed just before the node starts and again just after it stops, averaged
    # (a shared machine drifts within minutes: docs/PERFORMANCE.md). The estimator stays idle meanwhile.
    precision = precision or ("fp32" if backend == "onnxruntime" else res["node_precision"])
    size = res.get("node_input_size")
    est = DepthEstimator(ckpt, device="cpu", precision=precision, backend=backend, input_size=size)
    if backend == "auto":
        res["node_backend"] = est.backend  # what the node resolves too: same rule, same machine
    x = est.preprocess(test_frame())
    fwd_before = timed(lambda est=est, x=x: est.forward(x), 15, warmup=3)
    fwd = fwd_before
    r: dict = {}
    details: dict = {}
    run = NodeRun(ckpt, precision, {"backend": backend, "frame_policy": frame_policy, **({"input_height": str(size[0]), "input_width": str(size[1])}
                                                          if size else {})})
    try:
        if not run.wait_ready(180):
            print("  node: no depth came back within 180 s; node log:\n" + run.log_tail())
            res["node_error" + suffix] = "no output"
            return
        time.sleep(1.0)
        # 1) the load: 30 Hz for a bounded time
        sent, dur_ns = run.drive(rate_hz, duration_s=duration_s)
        time.sleep(1.0)  # let the last answers arrive
        lat, rx = run.latencies(skip_s=2.0)
        with run.lock:
            answered, points = len(run.depth_rx), run.points_rx
        hz = (len(rx) - 1) / (rx[-1] - rx[0]) if len(rx) > 2 else 0.0
        split = run.frame_split(skip_s=2.0)
        details["node_worker_cycle_p50_ms"] = run.worker_cycle(skip_s=2.0)
        r["node_output_hz"] = round(hz, 2)
        r["node_latency_p50_ms"] = round(pct(lat, 50), 1)
        r["node_latency_p95_ms"] = round(pct(lat, 95), 1)
        details["node_frames"] = {"sent": sent, "depth_received": answered, "points_received": points,
                                  "input_hz": rate_hz, "duration_s": duration_s}
        # 2) paced below the node's rate: latency without queueing = processing + transport
        paced_hz = max(1.0, min(rate_hz, 0.6 * hz)) if hz else 5.0
        run.drive(paced_hz, duration_s=min(10.0, duration_s))
        time.sleep(1.0)
        lat_p, _ = run.latencies(skip_s=1.0)
        split_p = run.frame_split(skip_s=1.0)
        for key, sp in (("", split), ("_paced", split_p)):
            if sp.get("latency"):
                # the "everything but the network forward" per frame, against that frame's forward
                share = [(lat - fw) / fw for lat, fw in zip(sp["latency"], sp["forward"], strict=True) if fw > 0]
                r["node_nonforward_share" + key] = round(pct(share, 50), 3)
                r["node_forward_ms" + key] = round(pct(sp["forward"], 50), 1)
                details["node_frame_split_p50_ms" + key] = {k: round(pct(v, 50), 2) for k, v in sp.items()}
                details["node_frame_split_frames" + key] = len(sp["latency"])
        r["node_latency_p50_ms_paced"] = round(pct(lat_p, 50), 1)
        r["node_paced_input_hz"] = round(paced_hz, 1)
        run.sample_rss()
        r["node_peak_rss_mb"] = round(run.peak_rss() / 2**20, 1)
        print(f"  node ({backend}): {sent} sent at {rate_hz:g} Hz, {answered} depth / {points} clouds back; "
              f"{hz:.1f} Hz out, latency p50 {r['node_latency_p50_ms']} ms p95 {r['node_latency_p95_ms']} ms; "
              f"paced {paced_hz:.1f} Hz p50 {r['node_latency_p50_ms_paced']} ms; "
              f"peak RSS {r['node_peak_rss_mb']} MB", flush=True)
        for key in ("node_frame_split_p50_ms", "node_frame_split_p50_ms_paced", "node_worker_cycle_p50_ms"):
            if details.get(key):
                print(f"  {key}: " + ", ".join(f"{k} {v} ms" for k, v in details[key].items()), flush=True)
    finally:
        run.close()
        fwd_after = timed(lambda est=est, x=x: est.forward(x), 15, warmup=3)
        fwd = (fwd_before + fwd_after) / 2
        r["node_raw_forward_ms"] = round(fwd, 2)
        details["node_raw_forward_ms_before_after"] = [round(fwd_before, 2), round(fwd_after, 2)]
        # overhead vs the raw network forward measured in this run (same threads, precision, backend)
        if "node_latency_p50_ms" in r:
            r["node_overhead_ratio"] = round(r["node_latency_p50_ms"] / fwd, 2)
            r["node_overhead_ratio_paced"] = round(r["node_latency_p50_ms_paced"] / fwd, 2)
        res.update({k + suffix: v for k, v in r.items()})
        res["details"].update({k + suffix: v for k, v in details.items()})

