"""The optimiser's parameter groups (one learning rate per part of the network) and the lr schedule."""

from __future__ import annotations

import math

import torch

from moadepth_core.config import TrainConfig
from moadepth_core.model.network import MoADepthCLIP

GROUP_OF_PART = {"backbone_tuned": "tuned_blocks", "adapters": "adapters", "decoder_heads": "decoder_heads"}


def param_groups(model: MoADepthCLIP, cfg: TrainConfig) -> list[dict]:
    """Tuned CLIP blocks at ``optim.lr``, adapters at ``adapter_lr``, decoder + heads at ``head_lr``."""
    o = cfg.optim
    lrs = {"tuned_blocks": o.lr, "adapters": o.adapter_lr if o.adapter_lr is not None else o.lr,
           "decoder_heads": o.head_lr if o.head_lr is not None else o.lr}
    groups: dict[str, list] = {k: [] for k in lrs}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups[GROUP_OF_PART[model.part_of(name)]].append(p)
    return [{"params": ps, "lr": lrs[k], "name": k} for k, ps in groups.items() if ps]


def lr_factor(step: int, total: int, schedule: str, warmup: int) -> float:
    """Multiplier of the base lr at ``step`` (linear warm-up, then constant or cosine to zero)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "cosine":
        t = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
    return 1.0


def build_optimizer(model: MoADepthCLIP, cfg: TrainConfig,
                    total_steps: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over :func:`param_groups` and a per-step LambdaLR following :func:`lr_factor`."""
    optimizer = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.optim.lr,
                                  betas=tuple(cfg.optim.betas), weight_decay=cfg.optim.weight_decay)
    sched, warm = cfg.optim.schedule, cfg.optim.warmup_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, sched, warm))
    return optimizer, scheduler
