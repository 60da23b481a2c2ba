"""Stage ``node_resolutions`` (issue 24): the default depth_node at 640x480, 1280x720 and 1920x1080,
back to back in one run, at the same input rate (rgb8 + CameraInfo, points on, the node's default
``point_stride``). Records ``node_output_hz_<W>x<H>``, ``node_latency_p50_ms_<W>x<H>``, each frame's
split and the worker's stages per size, and the 1080p / 480p ratios the issue's targets are set on."""

from __future__ import annotations

import time
from pathlib import Path

from .common import make_checkpoint, pct, test_frame
from .node_run import NodeRun

RESOLUTIONS = ((480, 640), (720, 1280), (1080, 1920))  # (h, w)


def stage_node_resolutions(res: dict, tmp: Path, duration_s: float, rate_hz: float) -> None:
    from moadepth_core.runtime.torch.estimator import DepthEstimator

    ckpt = make_checkpoint(tmp)
    precision = res["node_precision"]
    size = res.get("node_input_size")
    # records the graph for the node's cached start (as the node stage does); never timed here
    est = DepthEstimator(ckpt, device="cpu", precision=precision, backend="auto", input_size=size)
    est.forward(est.preprocess(test_frame()))
    del est
    extra = {"input_height": str(size[0]), "input_width": str(size[1])} if size else {}
    for h, w in RESOLUTIONS:
        tag = f"{w}x{h}"
        run = NodeRun(ckpt, precision, extra, frame_hw=(h, w))
        try:
            if not run.wait_ready(180):
                print(f"  {tag}: no depth came back within 180 s; node log:\n" + run.log_tail())
                res.setdefault("errors", {})[f"node_resolutions_{tag}"] = "no output"
                continue
            time.sleep(1.0)
            sent, _ = run.drive(rate_hz, duration_s=duration_s)
            time.sleep(1.0)  # the last answers
            lat, rx = run.latencies(skip_s=2.0)
            with run.lock:
                answered, points = len(run.depth_rx), run.points_rx
            hz = (len(rx) - 1) / (rx[-1] - rx[0]) if len(rx) > 2 else 0.0
            split = run.frame_split(skip_s=2.0)
            cycle = run.worker_cycle(skip_s=2.0)
            res[f"node_output_hz_{tag}"] = round(hz, 2)
            res[f"node_latency_p50_ms_{tag}"] = round(pct(lat, 50), 1)
            res[f"node_latency_p95_ms_{tag}"] = round(pct(lat, 95), 1)
            if split.get("latency"):
                share = [(lt - fw) / fw for lt, fw in zip(split["latency"], split["forward"], strict=True) if fw > 0]
                res[f"node_nonforward_share_{tag}"] = round(pct(share, 50), 3)
                res["details"][f"node_frame_split_p50_ms_{tag}"] = {k: round(pct(v, 50), 2) for k, v in split.items()}
            res["details"][f"node_worker_cycle_p50_ms_{tag}"] = cycle
            res["details"][f"node_frames_{tag}"] = {"sent": sent, "depth_received": answered,
                                                     "points_received": points, "input_hz": rate_hz,
                                                     "duration_s": duration_s}
            print(f"  {tag}: {sent} sent at {rate_hz:g} Hz, {answered} depth / {points} clouds back; "
                  f"{hz:.1f} Hz out, latency p50 {res[f'node_latency_p50_ms_{tag}']} ms "
                  f"p95 {res[f'node_latency_p95_ms_{tag}']} ms", flush=True)
            if cycle:
                print("    worker stages p50: " + ", ".join(f"{k} {v} ms" for k, v in cycle.items()), flush=True)
        finally:
            run.close()
    lo, hi = "640x480", "1920x1080"
    if res.get(f"node_output_hz_{lo}") and f"node_output_hz_{hi}" in res:
        res["node_rate_ratio_1080p_480p"] = round(res[f"node_output_hz_{hi}"] / res[f"node_output_hz_{lo}"], 2)
    if res.get(f"node_latency_p50_ms_{lo}") and f"node_latency_p50_ms_{hi}" in res:
        res["node_latency_ratio_1080p_480p"] = round(
            res[f"node_latency_p50_ms_{hi}"] / res[f"node_latency_p50_ms_{lo}"], 2)
