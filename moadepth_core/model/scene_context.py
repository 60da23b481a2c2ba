"""The global semantic context vector: scene prompts through CLIP's frozen text tower.

Computed once at model construction (no learnable parameters) and stored as a
buffer in the model and in checkpoints, so inference never loads the 63 M
parameter text tower.
"""

from __future__ import annotations

from collections.abc import Sequence

import open_clip
import torch
import torch.nn.functional as F


@torch.no_grad()
def scene_context_vector(clip_model: torch.nn.Module, backbone: str, prompts: Sequence[str],
                         template: str = "a photo of a {}") -> torch.Tensor:
    """Average of the L2-normalised text embeddings of ``template.format(p)`` (shape (D,))."""
    if not prompts:
        raise ValueError("at least one scene prompt is needed for the context vector")
    tokenizer = open_clip.get_tokenizer(backbone)
    tokens = tokenizer([template.format(p) for p in prompts])
    was_training = clip_model.training
    clip_model.eval()
    emb = clip_model.encode_text(tokens)
    clip_model.train(was_training)
    return F.normalize(emb.float(), dim=-1).mean(0)
