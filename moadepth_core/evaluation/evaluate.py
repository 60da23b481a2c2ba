"""The NYU protocol (docs/PAPER.md) on any RGB-D source, plus the one predict-a-frame path; the
``moadepth evaluate`` command is :mod:`moadepth_core.cli.evaluate`.

:func:`predict_depth` is shared by ``predict``, ``evaluate`` and the trainer's validation, so
the depth a user sees, the depth that is scored and the depth that picks ``best.pt`` come from
the same code. The prediction is upsampled to the ground truth's full resolution before
scoring, as the protocol requires (scoring at network resolution flatters coarse models).
"""

from __future__ import annotations

import csv
import io
import logging
import sys
from pathlib import Path

import numpy as np

from moadepth_core.errors import DataError
from moadepth_core.evaluation import colorize
from moadepth_core.evaluation.metrics import METRIC_KEYS, aggregate, compute_metrics
from moadepth_core.files import write_atomic
from moadepth_core.runtime.torch.estimator import DepthEstimator

log = logging.getLogger("moadepth")

#: Formats scored with the Eigen crop by default (evaluate and the trainer's validation).
NYU_FORMATS = ("nyu_mat", "file_list")


def predict_depth(est: DepthEstimator, rgb: np.ndarray, flip_tta: bool = False) -> np.ndarray:
    """HxW float32 metres at ``rgb``'s size; ``flip_tta`` averages with the mirrored image's prediction."""
    return est.predict_flip_averaged(rgb) if flip_tta else est.predict(rgb).depth


def spread_indices(n: int, k: int | None) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all when k is None or >= n)."""
    if k is None or k >= n:
        return list(range(n))
    return sorted({int(round(v)) for v in np.linspace(0, n - 1, max(k, 1))})


def evaluate_source(est: DepthEstimator, source, *, eigen_crop: bool = False, median_scaling: bool = False,
                    flip_tta: bool = False, max_images: int | None = None, keep_samples: int = 0,
                    progress: bool = True, max_depth: float | None = None,
                    ) -> tuple[dict, list[dict], list[tuple]]:
    """Score ``est`` on ``source``; returns (summary, per-image rows, kept (name, rgb, gt, pred) samples)."""
    max_depth = float(max_depth if max_depth is not None else est.model.cfg.max_depth)
    indices = spread_indices(len(source), max_images)
    keep = set(spread_indices(len(indices), keep_samples)) if keep_samples else set()
    rows, samples = [], []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(indices), unit="img", desc="evaluate", file=sys.stderr, leave=False)
    try:
        for j, i in enumerate(indices):
            frame = source[i]
            pred = predict_depth(est, frame.rgb, flip_tta)
            m = compute_metrics(pred, frame.depth, max_depth=max_depth, eigen_crop=eigen_crop,
                                median_scaling=median_scaling)
            rows.append({"name": frame.name, **m})
            if j in keep:
                samples.append((frame.name, frame.rgb, frame.depth, pred))
            if bar is not None:
                bar.update(1)
                if rows[-1]["valid_pixels"]:
                    bar.set_postfix(abs_rel=f"{m['abs_rel']:.3f}")
    finally:
        if bar is not None:
            bar.close()
    return aggregate(rows), rows, samples


def sample_grid(samples: list[tuple], max_depth: float = 10.0) -> np.ndarray:
    """Rows of image | ground truth | prediction | |error|; one depth and one error scale for all rows."""
    if not samples:
        raise DataError("no samples to draw")
    vmin, vmax = colorize.depth_range(*[s[2] for s in samples], *[s[3] for s in samples])
    errs = [np.where(s[2] > 0, np.abs(s[3] - s[2]), np.nan) for s in samples]
    finite = np.concatenate([e[np.isfinite(e)] for e in errs]) if errs else np.zeros(1)
    emax = float(np.percentile(finite, 99)) if finite.size else 1.0
    rows = []
    for (name, rgb, gt, pred), err in zip(samples, errs, strict=True):
        rows.append(colorize.panel(
            [rgb, colorize.colorize_depth(gt, vmin, vmax), colorize.colorize_depth(pred, vmin, vmax),
             colorize.colorize_error(err, max(emax, 1e-3))],
            [f"{name}", f"gt {vmin:.1f}-{vmax:.1f} m", "prediction", f"|err| 0-{emax:.2f} m"], height=240))
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(padded, axis=0)


def write_rows_csv(path: Path, rows: list[dict]) -> None:
    """Per-image metrics as CSV, written atomically."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["name", *METRIC_KEYS, "valid_pixels"])
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k) for k in w.fieldnames})
    write_atomic(path, buf.getvalue())


def open_eval_source(data: str, split: str | None = None, **options):
    """Open a dataset for evaluation; returns (source, format name)."""
    from moadepth_core.data import detect_format, open_source

    fmt = detect_format(data)
    return open_source(data, split=split, **options), fmt
