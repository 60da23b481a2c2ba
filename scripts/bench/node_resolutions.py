"""Stage ``node_resolutions`` (issue 24): the default depth_node at 640x480, 1280x720 and 1920x1080 in
one run, at the same input rate (rgb8 + CameraInfo, points on, the node's default ``point_stride``).
Records ``node_output_hz_<W>x<H>``, ``node_latency_p50_ms_<W>x<H>``, each frame's split and the
worker's stages per size, and the 1080p / 480p ratios the issue's targets are set on.

Why interleaved: a shared VM's speed drifts by tens of percent within minutes, so sizes measured one
after the other compare the hours as much as the sizes. The three nodes start once and are driven in
turn, in the order 480p, 720p, 1080p, 1080p, 720p, 480p (``ROUNDS`` times the whole order split the
drive time), and each size's figures pool its segments: a drift that is linear over the stage then
weighs on every size alike."""

from __future__ import annotations

import time
from pathlib import Path

from .common import make_checkpoint, pct, test_frame
from .node_run import NodeRun

RESOLUTIONS = ((480, 640), (720, 1280), (1080, 1920))  # (h, w)
ROUNDS = 2  # forward then backward through RESOLUTIONS: each size driven ROUNDS times
SKIP_S = 2.0  # the start of each segment not counted (the node's pacer relearns the camera's period)


def segment_order(sizes: tuple = RESOLUTIONS, rounds: int = ROUNDS) -> list:
    """Sizes in drive order: forward, backward, forward, ... ``rounds`` passes (ABC CBA ...)."""
    return [s for r in range(rounds) for s in (sizes if r % 2 == 0 else sizes[::-1])]


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
    tag = {hw: f"{hw[1]}x{hw[0]}" for hw in RESOLUTIONS}
    seconds = max(SKIP_S + 3.0, duration_s / ROUNDS)  # each segment; every size gets ~duration_s in all
    runs: dict[tuple[int, int], NodeRun] = {}
    pooled = {hw: {"lat": [], "answers": 0, "span": 0.0, "sent": 0, "depth": 0, "points": 0,
                   "split": {}, "cycle": {}} for hw in RESOLUTIONS}
    try:
        for hw in RESOLUTIONS:
            runs[hw] = NodeRun(ckpt, precision, extra, frame_hw=hw)
        for hw, run in runs.items():
            if not run.wait_ready(180):
                print(f"  {tag[hw]}: no depth came back within 180 s; node log:\n" + run.log_tail())
                res.setdefault("errors", {})[f"node_resolutions_{tag[hw]}"] = "no output"
        ready = {hw for hw, run in runs.items() if run.depth_rx}
        for i, hw in enumerate(hw for hw in segment_order() if hw in ready):
            run, acc = runs[hw], pooled[hw]
            time.sleep(1.0)
            sent, _ = run.drive(rate_hz, duration_s=seconds)  # clears the run's answers first
            time.sleep(1.0)  # the last answers
            lat, rx = run.latencies(skip_s=SKIP_S)
            with run.lock:
                acc["depth"] += len(run.depth_rx)
            acc["points"] += run.points_rx
            acc["sent"] += sent
            acc["lat"] += lat
            if len(rx) > 2:
                acc["answers"] += len(rx) - 1
                acc["span"] += rx[-1] - rx[0]
            for into, part in ((acc["split"], run.frame_split(skip_s=SKIP_S)),
                               (acc["cycle"], run.worker_samples(skip_s=SKIP_S))):
                for k, v in part.items():
                    into.setdefault(k, []).extend(v)
            seg_hz = (len(rx) - 1) / (rx[-1] - rx[0]) if len(rx) > 2 else 0.0
            print(f"  segment {i + 1}, {tag[hw]}: {sent} sent, {seg_hz:.1f} Hz out, "
                  f"latency p50 {pct(lat, 50) if lat else float('nan'):.1f} ms", flush=True)
    finally:
        for run in runs.values():
            run.close()
    for hw in RESOLUTIONS:
        acc, t = pooled[hw], tag[hw]
        if not acc["lat"]:
            continue
        hz = acc["answers"] / acc["span"] if acc["span"] > 0 else 0.0
        res[f"node_output_hz_{t}"] = round(hz, 2)
        res[f"node_latency_p50_ms_{t}"] = round(pct(acc["lat"], 50), 1)
        res[f"node_latency_p95_ms_{t}"] = round(pct(acc["lat"], 95), 1)
        split = acc["split"]
        if split.get("latency"):
            share = [(lt - fw) / fw for lt, fw in zip(split["latency"], split["forward"], strict=True) if fw > 0]
            res[f"node_nonforward_share_{t}"] = round(pct(share, 50), 3)
            res["details"][f"node_frame_split_p50_ms_{t}"] = {k: round(pct(v, 50), 2) for k, v in split.items()}
        cycle = {k: round(pct(v, 50), 2) for k, v in acc["cycle"].items()}
        res["details"][f"node_worker_cycle_p50_ms_{t}"] = cycle
        res["details"][f"node_frames_{t}"] = {"sent": acc["sent"], "depth_received": acc["depth"],
                                              "points_received": acc["points"], "input_hz": rate_hz,
                                              "segments": ROUNDS, "segment_s": seconds}
        print(f"  {t} (pooled over {ROUNDS} segments): {acc['sent']} sent at {rate_hz:g} Hz, {acc['depth']} depth "
              f"/ {acc['points']} clouds back; {hz:.1f} Hz out, latency p50 {res[f'node_latency_p50_ms_{t}']} ms "
              f"p95 {res[f'node_latency_p95_ms_{t}']} ms", flush=True)
        if cycle:
            print("    worker stages p50: " + ", ".join(f"{k} {v} ms" for k, v in cycle.items()), flush=True)
    res["details"]["node_resolutions_order"] = [tag[hw] for hw in segment_order()]
    lo, hi = "640x480", "1920x1080"
    if res.get(f"node_output_hz_{lo}") and f"node_output_hz_{hi}" in res:
        res["node_rate_ratio_1080p_480p"] = round(res[f"node_output_hz_{hi}"] / res[f"node_output_hz_{lo}"], 2)
    if res.get(f"node_latency_p50_ms_{lo}") and f"node_latency_p50_ms_{hi}" in res:
        res["node_latency_ratio_1080p_480p"] = round(
            res[f"node_latency_p50_ms_{hi}"] / res[f"node_latency_p50_ms_{lo}"], 2)
