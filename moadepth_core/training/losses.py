"""Training loss: ``ce·CE(bins) + l1·L1 + silog·SILog`` over valid ground truth.

Pure functions of (prediction, target, valid mask) returning plain dicts, so the
trainer logs every term. Ground truth uses 0 for "no measurement".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from moadepth_core.config import LossConfig
from moadepth_core.model.head import depth_to_bin_index


def valid_mask(target: torch.Tensor, min_depth: float = 1e-3, max_depth: float | None = None) -> torch.Tensor:
    m = torch.isfinite(target) & (target > min_depth)
    if max_depth is not None:
        m &= target <= max_depth
    return m


def silog(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, *, form: str = "usual",
          lam: float = 0.85, alpha: float = 10.0) -> torch.Tensor:
    """Scale-invariant log loss with ``g = log pred − log target`` over valid pixels.

    ``usual`` (BTS/AdaBins): ``α·sqrt(mean g² − λ·mean(g)²)``.
    ``paper`` (as written in MoA-DepthCLIP): ``α·(Var g + λ·mean(g)²)``, which equals
    ``α·(mean g² − (1−λ)·mean(g)²)``: no square root, and mostly *not* scale-invariant for λ = 0.85.
    """
    g = torch.log(pred[valid].clamp_min(1e-6)) - torch.log(target[valid])
    if g.numel() == 0:
        return pred.sum() * 0.0
    mean = g.mean()
    if form == "usual":
        return alpha * torch.sqrt((g.pow(2).mean() - lam * mean.pow(2)).clamp_min(1e-12))
    if form == "paper":
        return alpha * (g.var(unbiased=False) + lam * mean.pow(2))
    raise ValueError(f"unknown SILog form {form!r} (use 'usual' or 'paper')")


def bin_cross_entropy(logits: torch.Tensor, target: torch.Tensor, edges: torch.Tensor,
                      min_depth: float = 1e-3) -> torch.Tensor:
    """CE of the bin logits (B,N,h,w) against the bin holding the ground truth at the logits' resolution.

    Ground truth is sampled with nearest-neighbour (never averaged across an edge) at the head's
    resolution, which keeps the CE cheap; L1 and SILog see the full-resolution depth.
    """
    t = F.interpolate(target, size=logits.shape[-2:], mode="nearest") if target.shape[-2:] != logits.shape[-2:] \
        else target
    valid = valid_mask(t, min_depth)[:, 0]
    if not valid.any():
        return logits.sum() * 0.0
    idx = depth_to_bin_index(t[:, 0], edges)
    ce = F.cross_entropy(logits.float(), idx, reduction="none")
    return ce[valid].mean()


def depth_loss(out: dict, target: torch.Tensor, cfg: LossConfig, edges: torch.Tensor) -> dict[str, torch.Tensor]:
    """All loss terms and their weighted sum (``loss``). target: (B,1,H,W) metres, 0 = invalid."""
    pred = out["depth"].float()
    valid = valid_mask(target)
    terms = {}
    terms["ce"] = bin_cross_entropy(out["bin_logits"], target, edges)
    terms["l1"] = (pred[valid] - target[valid]).abs().mean() if valid.any() else pred.sum() * 0.0
    terms["silog"] = silog(pred, target, valid, form=cfg.silog_form, lam=cfg.silog_lambda, alpha=cfg.silog_alpha)
    terms["loss"] = cfg.ce_weight * terms["ce"] + cfg.l1_weight * terms["l1"] + cfg.silog_weight * terms["silog"]
    return terms
