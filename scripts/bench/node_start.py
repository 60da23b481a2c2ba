"""Stage ``node_start``: depth_node's start on a new checkpoint (it exports the ONNX Runtime graph) and its
next start on the same one (the cached graph, without torch): seconds to the first depth, peak and
settled RSS of each."""

from __future__ import annotations

import os
from pathlib import Path

from .common import make_weights_file_checkpoint
from .node_run import NodeRun


def stage_node_start(res: dict, tmp: Path) -> None:
    """depth_node's first start on a new checkpoint over a CLIP weights file (it exports the graph) and
    its next start on the same checkpoint (a robot's every other start): seconds from spawn to the first
    depth (frames go out at 2 Hz meanwhile, so ±0.5 s), the node's peak RSS, the peak of a child it
    started (the first start exports the graph in one: its high-water mark, last read up to 0.5 s
    before it exits), and RSS after 5 s at 10 Hz."""
    import shutil

    cache = tmp / "onnx-start"
    shutil.rmtree(cache, ignore_errors=True)
    old = os.environ.get("MOADEPTH_ONNX_CACHE")
    os.environ["MOADEPTH_ONNX_CACHE"] = str(cache)
    ckpt = make_weights_file_checkpoint(tmp)
    try:
        for key in ("first", "next"):
            run = NodeRun(ckpt, res["node_precision"], {"backend": "auto"})
            try:
                if not run.wait_ready(300):
                    print(f"  node ({key} start): no depth within 300 s; node log:\n" + run.log_tail())
                    res[f"node_{key}_start_error"] = "no output"
                    return
                run.drive(10.0, duration_s=5.0)
                settled = run.sample_rss()
                res[f"node_{key}_start_s"] = round(run.first_depth_s, 1)
                res[f"node_{key}_start_peak_rss_mb"] = round(run.peak_rss() / 2**20, 1)
                res[f"node_{key}_start_settled_rss_mb"] = round(settled / 2**20, 1)
                res[f"node_{key}_start_child_peak_rss_mb"] = round(run.child_peak_rss / 2**20, 1)
                res["details"][f"node_{key}_start_without_torch"] = run.started_from_cache()
                print(f"  node, {key} start: first depth after {res[f'node_{key}_start_s']} s, peak RSS "
                      f"{res[f'node_{key}_start_peak_rss_mb']} MB (its export child's: "
                      f"{res[f'node_{key}_start_child_peak_rss_mb']} MB), settled "
                      f"{res[f'node_{key}_start_settled_rss_mb']} MB, "
                      f"from the cached graph without torch: {run.started_from_cache()}", flush=True)
            finally:
                run.close()
    finally:
        if old is None:
            os.environ.pop("MOADEPTH_ONNX_CACHE", None)
        else:
            os.environ["MOADEPTH_ONNX_CACHE"] = old

