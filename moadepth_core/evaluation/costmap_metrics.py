"""Agreement of two obstacle grids: pure functions of (predicted cells, reference cells).

``precision`` is the share of predicted obstacle cells the reference also marks (phantoms lower
it), ``recall`` the share of reference obstacle cells the prediction marks (missed obstacles
lower it), ``iou`` their intersection over union. The ``_within_1_cell`` variants count a cell as
matched when the other grid has an obstacle within Chebyshev distance 1 (a 5 cm shift does not
matter to Nav2); their IoU is matched predictions over (predictions + unmatched references), which
is the plain IoU at zero tolerance. A ratio whose denominator is zero is ``None`` with a note,
never a division by zero.
"""

from __future__ import annotations

import numpy as np

from moadepth_core.errors import DataError

RATIO_KEYS = ("iou", "precision", "recall", "iou_within_1_cell", "precision_within_1_cell",
              "recall_within_1_cell")


def dilate_1(grid: np.ndarray) -> np.ndarray:
    """Cells within Chebyshev distance 1 of an obstacle (3x3 dilation, nothing wraps at the edges)."""
    g = np.asarray(grid, dtype=bool)
    p = np.pad(g, 1)
    out = np.zeros_like(g)
    h, w = g.shape
    for dy in range(3):
        for dx in range(3):
            out |= p[dy:dy + h, dx:dx + w]
    return out


def _ratio(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


def compare_grids(pred: np.ndarray, ref: np.ndarray) -> dict:
    """Counts and ratios of one pair of (ny, nx) bool obstacle grids."""
    pred, ref = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    if pred.shape != ref.shape or pred.ndim != 2:
        raise DataError(f"obstacle grids must be 2-D and the same shape, got {pred.shape} and {ref.shape}")
    n_pred, n_ref = int(pred.sum()), int(ref.sum())
    tp = int((pred & ref).sum())
    matched_pred = int((pred & dilate_1(ref)).sum())
    matched_ref = int((ref & dilate_1(pred)).sum())
    out = {
        "iou": _ratio(tp, n_pred + n_ref - tp),
        "precision": _ratio(tp, n_pred),
        "recall": _ratio(tp, n_ref),
        "iou_within_1_cell": _ratio(matched_pred, n_pred + n_ref - matched_ref),
        "precision_within_1_cell": _ratio(matched_pred, n_pred),
        "recall_within_1_cell": _ratio(matched_ref, n_ref),
        "predicted_cells": n_pred,
        "reference_cells": n_ref,
        "phantom_cells": n_pred - tp,
        "missed_cells": n_ref - tp,
    }
    notes = []
    if n_ref == 0:
        notes.append("the reference marks no obstacle cell: recall is undefined")
    if n_pred == 0:
        notes.append("the prediction marks no obstacle cell: precision is undefined")
    if notes:
        out["note"] = "; ".join(notes)
    return out


def summarize_frames(rows: list[dict], reference: str) -> dict:
    """Per-frame comparisons averaged over frames: each ratio over the frames where it is defined."""
    out: dict = {"reference": reference, "frames": len(rows)}
    for k in RATIO_KEYS:
        vals = [r[k] for r in rows if r.get(k) is not None]
        out[k] = float(np.mean(vals)) if vals else None
        out[f"{k}_frames"] = len(vals)
    n = max(len(rows), 1)
    out["phantom_cells_per_frame"] = sum(r["phantom_cells"] for r in rows) / n if rows else None
    out["missed_cells_per_frame"] = sum(r["missed_cells"] for r in rows) / n if rows else None
    undefined = [k for k in ("iou", "precision", "recall") if out[k] is None]
    if undefined:
        out["note"] = (f"{', '.join(undefined)} undefined: no frame had obstacle cells to divide by "
                       "(check the height band and ranges against the scene)")
    return out
