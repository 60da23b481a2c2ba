"""Stage ``soak`` (``--soak`` only, issue 7): frames at the node's max rate through depth_node; RSS growth
after warm-up, last frame answered, counts."""

from __future__ import annotations

import time
from pathlib import Path

from .common import make_checkpoint
from .node_run import NodeRun


def stage_soak(res: dict, tmp: Path, frames: int, warmup_frames: int) -> None:
    """Issue 7: frames at the node's max rate (closed loop); RSS growth after warm-up < 5 %,
    last frame answered, counts add up (sent = answered + dropped, no duplicate or unknown stamps)."""
    ckpt = make_checkpoint(tmp)
    run = NodeRun(ckpt, res["node_precision"])
    try:
        if not run.wait_ready(120):
            print("  soak: node gave no output; log:\n" + run.log_tail())
            res["soak_error"] = "no output"
            return
        run.drive(-1, frames=warmup_frames)
        time.sleep(1.0)
        rss_warm = run.sample_rss()
        run.rss_samples.clear()
        t0 = time.perf_counter()
        sent, _ = run.drive(-1, frames=frames)
        last_stamp = max(run.sent)
        deadline = time.perf_counter() + 15
        while time.perf_counter() < deadline:
            with run.lock:
                if any(s == last_stamp for s, _ in run.depth_rx[-5:]):
                    break
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        rss_end = run.sample_rss()
        with run.lock:
            stamps = [s for s, _ in run.depth_rx]
            points = run.points_rx
        answered = len(stamps)
        unknown = len(set(stamps) - set(run.sent))
        dup = answered - len(set(stamps))
        peak = max((r for _, r in run.rss_samples), default=rss_end)
        soak = {
            "frames_sent": sent, "depth_received": answered, "points_received": points,
            "dropped": sent - answered, "duplicates": dup, "unknown_stamps": unknown,
            "counts_add_up": answered + (sent - answered) == sent and dup == 0 and unknown == 0,
            "last_frame_answered": last_stamp in set(stamps),
            "rss_after_warmup_mb": round(rss_warm / 2**20, 1), "rss_end_mb": round(rss_end / 2**20, 1),
            "rss_peak_mb": round(peak / 2**20, 1),
            "rss_growth_pct": round(100 * (rss_end - rss_warm) / rss_warm, 2) if rss_warm else None,
            "rss_peak_growth_pct": round(100 * (peak - rss_warm) / rss_warm, 2) if rss_warm else None,
            "elapsed_s": round(elapsed, 1), "output_hz": round(answered / elapsed, 2),
        }
        res["soak"] = soak
        print("  soak: " + ", ".join(f"{k} {v}" for k, v in soak.items()), flush=True)
    finally:
        run.close()

