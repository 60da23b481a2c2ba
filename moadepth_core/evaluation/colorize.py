"""Colourised depth / error maps and labelled panels for predict, evaluate and bag_eval.

All images here are HxWx3 uint8 **RGB**; only :func:`save_png` converts to OpenCV's BGR.
Invalid depth (0, NaN, Inf) is drawn black so holes never look like a colour on the scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from moadepth_core.errors import DataError

_CMAPS = {
    "turbo": cv2.COLORMAP_TURBO,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "magma": cv2.COLORMAP_MAGMA,
    "inferno": cv2.COLORMAP_INFERNO,
    "jet": cv2.COLORMAP_JET,
    "gray": None,
}


def depth_range(*depths: np.ndarray, percentile: float = 99.0) -> tuple[float, float]:
    """A shared (vmin, vmax) over several depth maps' valid pixels: one scale for GT and prediction."""
    vals = [d[np.isfinite(d) & (d > 0)] for d in (np.asarray(x, dtype=np.float32) for x in depths)]
    vals = [v for v in vals if v.size]
    if not vals:
        return 0.0, 1.0
    allv = np.concatenate(vals)
    lo, hi = float(np.percentile(allv, 100 - percentile)), float(np.percentile(allv, percentile))
    return (lo, hi) if hi > lo else (lo, lo + 1e-6)


def _apply(norm: np.ndarray, valid: np.ndarray, cmap: str) -> np.ndarray:
    if cmap not in _CMAPS:
        raise DataError(f"unknown colour map {cmap!r}; expected one of {', '.join(_CMAPS)}")
    u8 = (np.clip(np.nan_to_num(norm, nan=0.0), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if _CMAPS[cmap] is None:
        rgb = np.repeat(u8[..., None], 3, axis=2)
    else:
        rgb = cv2.cvtColor(cv2.applyColorMap(u8, _CMAPS[cmap]), cv2.COLOR_BGR2RGB)
    rgb[~valid] = 0
    return rgb


def colorize_depth(
    depth: np.ndarray, vmin: float | None = None, vmax: float | None = None, cmap: str = "turbo"
) -> np.ndarray:
    """HxWx3 uint8 RGB of an HxW depth map; near = blue end of turbo, far = red, invalid black.

    Pass the same ``vmin``/``vmax`` (e.g. from :func:`depth_range`) for maps that are compared.
    """
    d = np.asarray(depth, dtype=np.float32)
    if d.ndim != 2:
        raise DataError(f"depth to colourise must be HxW, got shape {d.shape}")
    valid = np.isfinite(d) & (d > 0)
    if vmin is None or vmax is None:
        lo, hi = depth_range(d, percentile=100.0)
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    span = max(float(vmax) - float(vmin), 1e-9)
    return _apply((d - float(vmin)) / span, valid, cmap)


def colorize_error(err: np.ndarray, vmax: float, cmap: str = "magma") -> np.ndarray:
    """HxWx3 RGB of an absolute error map on 0..vmax; NaN (no ground truth) is black."""
    e = np.abs(np.asarray(err, dtype=np.float32))
    if e.ndim != 2:
        raise DataError(f"error map to colourise must be HxW, got shape {e.shape}")
    valid = np.isfinite(e)
    return _apply(e / max(float(vmax), 1e-9), valid, cmap)


def panel(
    images: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    *,
    height: int | None = None,
    gap: int = 4,
    title_height: int = 24,
) -> np.ndarray:
    """Side-by-side strip of HxWx3 (or HxW) uint8 images with a title bar over each.

    Every tile is resized (keeping aspect) to a common ``height`` (default: the first image's)
    so "image | ground truth | prediction | error" line up whatever their source sizes.
    """
    if not images:
        raise DataError("panel needs at least one image")
    if titles is not None and len(titles) != len(images):
        raise DataError(f"panel got {len(images)} images but {len(titles)} titles")
    tiles = []
    th = int(height or np.asarray(images[0]).shape[0])
    for i, img in enumerate(images):
        img = np.asarray(img)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise DataError(f"panel image {i} must be HxWx3 uint8, got {img.shape} {img.dtype}")
        tw = max(1, round(img.shape[1] * th / img.shape[0]))
        if img.shape[:2] != (th, tw):
            img = cv2.resize(img, (tw, th), interpolation=cv2.INTER_NEAREST)
        bar = np.full((title_height if titles else 0, tw, 3), 255, np.uint8)
        if titles:
            scale = max(0.35, min(0.6, title_height / 40))
            cv2.putText(bar, str(titles[i]), (4, title_height - 7), cv2.FONT_HERSHEY_SIMPLEX, scale,
                        (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(np.concatenate([bar, img], axis=0))
        if i < len(images) - 1 and gap > 0:
            tiles.append(np.full((tiles[-1].shape[0], gap, 3), 255, np.uint8))
    return np.ascontiguousarray(np.concatenate(tiles, axis=1))


def save_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an RGB (or grey) uint8 image as PNG, creating parent folders; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.asarray(rgb)
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), img):
        raise DataError(f"could not write PNG {path}")
    return path
