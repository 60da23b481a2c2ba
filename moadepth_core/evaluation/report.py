"""Evaluation plots and a small report folder (report.md + report.html), shared by bag_eval and the demo.

Why here and not in the tools: the same figures (metrics over time, error histogram, sample
panels) explain a bag evaluation and the demo, so they are drawn once. matplotlib runs
headless (Agg); nothing here needs a display or ROS.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from moadepth_core.evaluation import colorize
from moadepth_core.evaluation.metrics import METRIC_KEYS

#: absolute-error histogram bins in metres (the last bin also counts everything beyond it)
ERROR_BIN_EDGES = np.linspace(0.0, 3.0, 61)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def error_histogram(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Counts of |pred - gt| over ``valid`` pixels in :data:`ERROR_BIN_EDGES` (overflow in the last bin)."""
    err = np.abs(pred[valid].astype(np.float64) - gt[valid].astype(np.float64))
    err = np.minimum(err, ERROR_BIN_EDGES[-1])
    counts, _ = np.histogram(err, bins=ERROR_BIN_EDGES)
    return counts


def plot_metrics_over_time(rows: Sequence[Mapping], path: str | Path,
                           keys: Sequence[str] = ("abs_rel", "rmse", "delta1")) -> Path:
    """One panel per metric against the frame's time since the first frame (seconds)."""
    plt = _pyplot()
    t = [float(r["time_s"]) for r in rows]
    fig, axes = plt.subplots(len(keys), 1, figsize=(7, 1.8 * len(keys) + 0.6), sharex=True)
    axes = np.atleast_1d(axes)
    for ax, k in zip(axes, keys, strict=True):
        ax.plot(t, [float(r[k]) for r in rows], ".-", lw=1, ms=3)
        ax.set_ylabel(k)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("time since first frame [s]")
    fig.suptitle("per-frame metrics")
    return _save(fig, path)


def plot_error_histogram(counts: np.ndarray, path: str | Path, edges: np.ndarray = ERROR_BIN_EDGES) -> Path:
    """Distribution of absolute depth error over every evaluated pixel."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3))
    total = max(int(np.sum(counts)), 1)
    ax.bar(edges[:-1], np.asarray(counts) / total, width=np.diff(edges), align="edge", color="tab:blue")
    ax.set_xlabel(f"|prediction - ground truth| [m] (last bin: >= {edges[-2]:.2f} m)")
    ax.set_ylabel("fraction of pixels")
    ax.grid(alpha=0.3)
    return _save(fig, path)


#: colours of the costmap picture (RGB 0..1): free, obstacle, phantom (node only), missed (reference only)
COSTMAP_COLOURS = {"free": (1.0, 1.0, 1.0), "obstacle": (0.15, 0.15, 0.15), "phantom": (0.85, 0.1, 0.1),
                   "missed": (0.1, 0.35, 0.9)}


def plot_costmap(reference: np.ndarray, node: np.ndarray, origin: tuple[float, float], resolution: float,
                 path: str | Path, trajectory: np.ndarray | None = None, labels: Sequence[str] = ("reference",
                 "node"), title: str = "") -> Path:
    """reference | node | difference over the fixed-frame grid, the camera's path drawn on each.

    The difference shows cells both mark in grey, phantoms (node only) in red and missed obstacles
    (reference only) in blue. ``reference`` and ``node`` are (ny, nx) bool grids whose cell (0, 0)
    has its lower-left corner at ``origin`` (x, y, metres).
    """
    plt = _pyplot()
    ref, pred = np.asarray(reference, bool), np.asarray(node, bool)
    c = COSTMAP_COLOURS

    def rgb(masks: Sequence[tuple[np.ndarray, tuple]]) -> np.ndarray:
        img = np.empty((*ref.shape, 3))
        img[:] = c["free"]
        for m, col in masks:
            img[m] = col
        return img

    ny, nx = ref.shape
    extent = (origin[0], origin[0] + nx * resolution, origin[1], origin[1] + ny * resolution)
    panels = [(rgb([(ref, c["obstacle"])]), f"{labels[0]}: {int(ref.sum())} cells"),
              (rgb([(pred, c["obstacle"])]), f"{labels[1]}: {int(pred.sum())} cells"),
              (rgb([(ref & pred, c["obstacle"]), (pred & ~ref, c["phantom"]), (ref & ~pred, c["missed"])]),
               f"difference: {int((pred & ~ref).sum())} phantom (red), {int((ref & ~pred).sum())} missed (blue)")]
    # show the part of the grid that holds obstacles or the path, with a margin
    iy, ix = np.nonzero(ref | pred)
    xs = [origin[0] + (ix + 0.5) * resolution] + ([np.asarray(trajectory)[:, 0]] if trajectory is not None else [])
    ys = [origin[1] + (iy + 0.5) * resolution] + ([np.asarray(trajectory)[:, 1]] if trajectory is not None else [])
    xs, ys = np.concatenate(xs), np.concatenate(ys)
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.2))
    for ax, (img, name) in zip(axes, panels, strict=True):
        ax.imshow(img, origin="lower", extent=extent, interpolation="nearest")
        if xs.size:
            ax.set_xlim(max(extent[0], xs.min() - 0.5), min(extent[1], xs.max() + 0.5))
            ax.set_ylim(max(extent[2], ys.min() - 0.5), min(extent[3], ys.max() + 0.5))
        if trajectory is not None and len(trajectory):
            tr = np.asarray(trajectory)
            ax.plot(tr[:, 0], tr[:, 1], "-", color="tab:green", lw=1.5, label="camera path")
            ax.plot(tr[:1, 0], tr[:1, 1], "o", color="tab:green", ms=5)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("x [m]")
        ax.set_aspect("equal")
    axes[0].set_ylabel("y [m]")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_uncertainty_sweep(sweep: Sequence[Mapping], path: str | Path, default: float | None = None,
                           chosen: float | None = None) -> Path:
    """Costmap precision against recall, one point per ``max_uncertainty``; the node's default marked."""
    plt = _pyplot()
    pts = [(float(s["max_uncertainty"]), s.get("precision"), s.get("recall")) for s in sweep]
    pts = [(t, p, r) for t, p, r in pts if p is not None and r is not None]
    fig, ax = plt.subplots(figsize=(6.5, 5))
    if pts:
        ax.plot([r for _, _, r in pts], [p for _, p, _ in pts], ".-", color="tab:blue", lw=1, ms=7)
        for t, p, r in pts:
            ax.annotate("off" if t >= 1000 else f"{t:g}", (r, p), textcoords="offset points", xytext=(5, 4),
                        fontsize=8)
        for value, style, name in ((default, ("o", "tab:red"), "node default"),
                                   (chosen, ("s", "tab:green"), "chosen")):
            hit = [(t, p, r) for t, p, r in pts if value is not None and math.isclose(t, value)]
            if hit:
                ax.plot([hit[0][2]], [hit[0][1]], style[0], mfc="none", mec=style[1], ms=14, mew=2,
                        label=f"{name}: max_uncertainty {value:g}")
        ax.legend(loc="lower left", fontsize=9)
    else:
        ax.text(0.5, 0.5, "precision and recall undefined at every threshold", ha="center", transform=ax.transAxes)
    ax.set_xlabel("recall (reference obstacle cells the node marks)")
    ax.set_ylabel("precision (node cells the reference marks)")
    ax.set_title("costmap per frame vs. max_uncertainty (points above it dropped)", fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def sample_panel(rgb: np.ndarray, gt: np.ndarray, pred: np.ndarray, height: int | None = None) -> np.ndarray:
    """image | ground truth | prediction | absolute error; GT and prediction share one depth scale."""
    vmin, vmax = colorize.depth_range(gt, pred)
    valid = np.isfinite(gt) & (gt > 0) & np.isfinite(pred)
    err = np.where(valid, np.abs(pred - gt), np.nan)
    emax = float(np.nanpercentile(err, 98)) if valid.any() else 1.0
    tiles = [rgb, colorize.colorize_depth(gt, vmin, vmax), colorize.colorize_depth(pred, vmin, vmax),
             colorize.colorize_error(err, max(emax, 1e-3))]
    titles = ["image", f"ground truth {vmin:.1f}-{vmax:.1f} m", "prediction (same scale)",
              f"abs error 0-{emax:.2f} m"]
    return colorize.panel(tiles, titles, height=height or max(240, int(rgb.shape[0])))


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def metrics_table(rows: Mapping[str, Mapping], keys: Sequence[str] = METRIC_KEYS) -> str:
    """Markdown table: one row per label (e.g. "model", "best constant"), one column per metric."""
    lines = ["| | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for label, m in rows.items():
        lines.append(f"| {label} | " + " | ".join(_fmt(m.get(k, float("nan"))) for k in keys) + " |")
    return "\n".join(lines)


def write_report(out_dir: str | Path, title: str, blocks: Sequence[tuple[str, str]]) -> tuple[Path, Path]:
    """Write ``report.md`` and a self-contained-looking ``report.html`` from (heading, markdown) blocks.

    Block bodies are a small markdown subset: paragraphs, ``- `` lists, pipe tables,
    ``![caption](file)`` images and ``[label](file)`` links, enough for a result summary.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = [f"# {title}", ""]
    for heading, body in blocks:
        md += [f"## {heading}", "", body.strip(), ""]
    md_path = out / "report.md"
    md_path.write_text("\n".join(md))
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
             "img{max-width:100%}</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
    for heading, body in blocks:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts.append(_md_to_html(body.strip()))
    parts.append("</body></html>")
    html_path = out / "report.html"
    html_path.write_text("\n".join(parts))
    return md_path, html_path


def _inline(text: str) -> str:
    import re

    text = html.escape(text, quote=False)
    text = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", r"<img src='\2' alt='\1'>", text)
    text = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"<a href='\2'>\1</a>", text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)


def _md_to_html(body: str) -> str:
    out: list[str] = []
    for para in body.split("\n\n"):
        lines = [ln for ln in para.splitlines() if ln.strip()]
        if not lines:
            continue
        if all(ln.startswith("|") for ln in lines):
            rows = [ln.strip("|").split("|") for ln in lines if not set(ln) <= set("|-: ")]
            t = ["<table>"]
            for i, cells in enumerate(rows):
                tag = "th" if i == 0 else "td"
                t.append("<tr>" + "".join(f"<{tag}>{_inline(c.strip())}</{tag}>" for c in cells) + "</tr>")
            out.append("\n".join(t) + "</table>")
        elif all(ln.startswith("- ") for ln in lines):
            out.append("<ul>" + "".join(f"<li>{_inline(ln[2:])}</li>" for ln in lines) + "</ul>")
        else:
            out.append("<p>" + "<br>".join(_inline(ln) for ln in lines) + "</p>")
    return "\n".join(out)


def _save(fig, path: str | Path) -> Path:
    """Lay out ``fig``, write it to ``path`` as a PNG at 90 dpi and close it."""
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    _pyplot().close(fig)
    return path
