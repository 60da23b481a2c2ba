"""MoA-DepthCLIP: CLIP ViT-B/32 + Mixture-of-Adapters + scene vector + hybrid bins/regression head.

``forward`` takes images in [0, 1] (the network applies CLIP's normalisation,
so callers never need to know it) and returns a dict of the final depth and the
pieces that explain it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from moadepth_core.config import ModelConfig
from moadepth_core.model.backbone import (
    BackboneSource,
    ClipBackbone,
    check_input_size,
    create_clip,
    create_image_tower,
    frozen_fingerprint,
)
from moadepth_core.model.decoder import MultiScaleDecoder
from moadepth_core.model.head import HybridDepthHead
from moadepth_core.model.scene_context import scene_context_vector
from moadepth_core.runtime.memory import return_free_heap

# OpenAI CLIP's image normalisation (open_clip.constants OPENAI_DATASET_MEAN/STD).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class MoADepthCLIP(nn.Module):
    def __init__(self, cfg: ModelConfig, backbone: ClipBackbone, context: torch.Tensor | None,
                 source: BackboneSource) -> None:
        super().__init__()
        self.cfg = cfg
        self.source = source
        self.backbone = backbone
        self.decoder = MultiScaleDecoder(backbone.width, cfg.decoder_channels, len(cfg.adapter_blocks))
        context_dim = context.numel() if (cfg.use_context and context is not None) else None
        self.head = HybridDepthHead(cfg.decoder_channels, cfg.num_bins, cfg.min_depth, cfg.max_depth,
                                    cfg.bin_spacing, cfg.fusion, context_dim)
        self.register_buffer("context", context.float() if context is not None else torch.zeros(0))
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)
        self.fingerprint = frozen_fingerprint(backbone.visual)
        self.freeze()

    # -- parameter groups -------------------------------------------------------------------
    def is_frozen_name(self, name: str) -> bool:
        """Frozen = the CLIP tower except the tuned blocks (adapters, decoder, head all train)."""
        if not name.startswith("backbone.visual."):
            return False
        for i in self.cfg.tuned_blocks:
            if name.startswith(f"backbone.visual.transformer.resblocks.{i}."):
                return False
        return True

    def freeze(self) -> None:
        for name, p in self.named_parameters():
            p.requires_grad_(not self.is_frozen_name(name))

    def part_of(self, name: str) -> str:
        """Which part a parameter belongs to, for summaries and optimiser groups."""
        if name.startswith("backbone.adapters."):
            return "adapters"
        if name.startswith("backbone.visual."):
            return "backbone_frozen" if self.is_frozen_name(name) else "backbone_tuned"
        return "decoder_heads"

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Everything a checkpoint must hold: all but the frozen CLIP weights."""
        return {k: v for k, v in self.state_dict().items() if not self.is_frozen_name(k)}

    def train(self, mode: bool = True) -> MoADepthCLIP:
        super().train(mode)
        # Frozen layers stay in eval mode (no dropout/batch-stat drift in weights we never update).
        self.backbone.visual.eval()
        for i in self.cfg.tuned_blocks:
            self.backbone.visual.transformer.resblocks[i].train(mode)
        return self

    # -- forward -----------------------------------------------------------------------------
    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """image: (B, 3, H, W) in [0, 1], H and W multiples of 32.

        Returns ``depth`` (B,1,H,W) metres, ``uncertainty`` (B,1,H,W) relative spread,
        ``bin_logits``/``bin_probs`` (B,N,H/4,W/4), ``bin_centers`` (N,), ``bin_depth``,
        ``regression_depth``, ``fusion_weight`` (B,1,H/4,W/4), ``gate_weights`` [4 × (B,T,K)].
        """
        h, w = image.shape[-2:]
        check_input_size(h, w, self.backbone.patch)
        x = (image - self.mean.to(image.dtype)) / self.std.to(image.dtype)
        taps, gates = self.backbone(x)
        feats = self.decoder(taps)
        ctx = self.context if self.context.numel() else None
        out = self.head(feats, ctx)
        out["depth"] = F.interpolate(out.pop("depth_lowres"), size=(h, w), mode="bilinear", align_corners=False)
        out["uncertainty"] = F.interpolate(out.pop("uncertainty_lowres"), size=(h, w), mode="bilinear",
                                           align_corners=False)
        out["gate_weights"] = gates
        return out


def build_model(cfg: ModelConfig, *, context: torch.Tensor | None = None,
                pretrained: str | None = None) -> MoADepthCLIP:
    """Build the network; the context vector is computed from the prompts unless given.

    ``pretrained`` overrides ``cfg.pretrained`` (e.g. a checkpoint's weights file moved).
    """
    cfg.validate()
    needs_text = context is None and cfg.use_context
    tower = None if needs_text else create_image_tower(cfg, pretrained)
    if tower is not None:
        visual, source = tower
    else:
        clip_model, source = create_clip(cfg, pretrained)
        if needs_text:
            context = scene_context_vector(clip_model, cfg.backbone, cfg.scene_prompts, cfg.prompt_template)
        visual = clip_model.visual
        del clip_model  # the text tower is not needed any more
        return_free_heap()  # ... and its ~250 MB go back to the OS now, not at exit
    return MoADepthCLIP(cfg, ClipBackbone(visual, cfg), context, source)


def parameter_counts(model: MoADepthCLIP) -> dict[str, int]:
    """Parameter counts: total, trainable, and per part."""
    counts = {"backbone_frozen": 0, "backbone_tuned": 0, "adapters": 0, "decoder_heads": 0}
    trainable = 0
    for name, p in model.named_parameters():
        counts[model.part_of(name)] += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return {"total": sum(counts.values()), "trainable": trainable, **counts}
