"""The NYU Depth V2 evaluation protocol (the field's, used by every peer).

Per image: predictions clamped to ``[min_depth, max_depth]``, ground truth valid
where ``min_depth < d < max_depth``, optional Eigen crop; then AbsRel, SqRel,
RMSE, RMSE-log, log10, δ1..3 over valid pixels; the dataset figure is the mean
over images. Median scaling is only for relative (not metric) evaluation.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

METRIC_KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "delta1", "delta2", "delta3")
LOWER_IS_BETTER = {"abs_rel", "sq_rel", "rmse", "rmse_log", "log10"}
EIGEN_CROP_480x640 = (45, 471, 41, 601)  # rows, cols on 480×640


def eigen_crop_mask(h: int, w: int) -> np.ndarray:
    """Eigen crop ``[45:471, 41:601]`` on 480×640, scaled proportionally for other sizes."""
    top, bottom, left, right = EIGEN_CROP_480x640
    mask = np.zeros((h, w), dtype=bool)
    mask[round(top * h / 480): round(bottom * h / 480), round(left * w / 640): round(right * w / 640)] = True
    return mask


def compute_metrics(pred: np.ndarray, gt: np.ndarray, *, min_depth: float = 1e-3, max_depth: float = 10.0,
                    eigen_crop: bool = False, median_scaling: bool = False,
                    mask: np.ndarray | None = None) -> dict[str, float]:
    """Metrics of one image; ``pred`` and ``gt`` are HxW metres at the same size (invalid gt: 0/NaN)."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    gt = np.asarray(gt, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(gt) & (gt > min_depth) & (gt < max_depth) & np.isfinite(pred)
    if eigen_crop:
        valid &= eigen_crop_mask(*gt.shape)
    if mask is not None:
        valid &= mask
    n = int(valid.sum())
    if n == 0:
        return {**{k: float("nan") for k in METRIC_KEYS}, "valid_pixels": 0}
    p, g = pred[valid], gt[valid]
    if median_scaling:
        p = p * (np.median(g) / max(np.median(p), 1e-12))
    p = np.clip(p, min_depth, max_depth)
    ratio = np.maximum(p / g, g / p)
    diff = p - g
    return {
        "abs_rel": float(np.mean(np.abs(diff) / g)),
        "sq_rel": float(np.mean(diff**2 / g)),
        "rmse": float(np.sqrt(np.mean(diff**2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(p) - np.log(g)) ** 2))),
        "log10": float(np.mean(np.abs(np.log10(p) - np.log10(g)))),
        "delta1": float(np.mean(ratio < 1.25)),
        "delta2": float(np.mean(ratio < 1.25**2)),
        "delta3": float(np.mean(ratio < 1.25**3)),
        "valid_pixels": n,
    }


def scale_ratio(pairs: Iterable[tuple[np.ndarray, np.ndarray]], *, min_depth: float = 1e-3,
                max_depth: float = 10.0) -> float:
    """The scale ratio of (prediction, ground truth) image pairs: the median of prediction / truth over
    every valid pixel of every pair, pooled (1 = metric scale; no median scaling, no clamping).

    Valid: ground truth in ``(min_depth, max_depth)`` and a finite positive prediction. NaN with none.
    """
    ratios = []
    for pred, gt in pairs:
        pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            v = np.isfinite(gt) & (gt > min_depth) & (gt < max_depth) & np.isfinite(pred) & (pred > 0)
        ratios.append((pred[v] / gt[v]).astype(np.float32))
    r = np.concatenate(ratios) if ratios else np.zeros(0, np.float32)
    return float(np.median(r)) if r.size else float("nan")


def aggregate(per_image: Iterable[dict[str, float]]) -> dict[str, float]:
    """Mean over images with valid pixels; adds ``images`` and total ``valid_pixels``."""
    rows = [r for r in per_image if r.get("valid_pixels", 0) > 0]
    out: dict[str, float] = {k: float(np.mean([r[k] for r in rows])) if rows else float("nan")
                             for k in METRIC_KEYS}
    out["images"] = len(rows)
    out["valid_pixels"] = int(sum(r["valid_pixels"] for r in rows))
    return out


def is_better(metric: str, new: float, old: float | None) -> bool:
    if old is None or not np.isfinite(old):
        return bool(np.isfinite(new))
    return new < old if metric in LOWER_IS_BETTER else new > old
