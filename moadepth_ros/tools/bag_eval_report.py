"""``bag_eval``'s outputs: the best-constant-depth baseline, metrics.json, frames.csv and the plots."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from moadepth_core.evaluation import nav_eval, report
from moadepth_core.evaluation.metrics import METRIC_KEYS, aggregate, compute_metrics

BASELINE_STRIDE = 4  # the constant baseline is scored on every 4th pixel in both directions


def constant_baseline(gt_sub: list[np.ndarray], kw: dict) -> dict:
    """Metrics of predicting one depth everywhere: the median of all ground truth (an oracle constant).

    A model that does not beat this has learned nothing about the scene's geometry.
    """
    vals = [g[(g > kw["min_depth"]) & (g < kw["max_depth"])] for g in gt_sub]
    vals = [v for v in vals if v.size]
    if not vals:
        return {"depth_m": float("nan")}
    c = float(np.median(np.concatenate(vals)))
    per = [compute_metrics(np.full_like(g, c), g, **kw) for g in gt_sub]
    agg = aggregate(per)
    return {"depth_m": c, **{k: agg[k] for k in METRIC_KEYS}, "pixel_stride": BASELINE_STRIDE}


def jsonable(obj):
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    return obj


def write_outputs(out: Path, result: dict, rows: list[dict], hist: np.ndarray, with_nav: bool) -> None:
    """metrics.json (``result``), frames.csv (``rows``) and the metrics-over-time and error-histogram plots."""
    (out / "metrics.json").write_text(json.dumps(jsonable(result), indent=2) + "\n")
    with open(out / "frames.csv", "w", newline="") as f:
        cols = ["index", "name", "stamp_ns", "time_s", *METRIC_KEYS, "valid_pixels",
                *(nav_eval.FRAME_COLUMNS if with_nav else ())]
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    report.plot_metrics_over_time(rows, out / "metrics_over_time.png")
    report.plot_error_histogram(hist, out / "error_histogram.png")
