"""A light multi-scale decoder from the four ViT taps to a stride-4 feature map.

The paper leaves "7×7 tokens → dense depth" open. The taps at blocks 2/5/8/11
go from local to global, so, as in DPT, the early taps are placed at fine
strides (4, 8) and the late ones at coarse strides (16, 32), then fused top-down
with residual conv units. Widths are small (64 by default) so the decoder costs
a fraction of the backbone on a CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualConvUnit(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class MultiScaleDecoder(nn.Module):
    """taps (4 × (B, D, h, w) at stride 32) → (B, C, 8h, 8w) at stride 4."""

    strides = (4, 8, 16, 32)  # where each tap (shallow → deep) is placed

    def __init__(self, in_dim: int = 768, channels: int = 64, num_taps: int = 4) -> None:
        super().__init__()
        if num_taps != len(self.strides):
            raise ValueError(f"the decoder expects {len(self.strides)} taps, got {num_taps}")
        self.norms = nn.ModuleList(nn.LayerNorm(in_dim) for _ in range(num_taps))
        self.projs = nn.ModuleList(nn.Conv2d(in_dim, channels, 1) for _ in range(num_taps))
        self.fuse = nn.ModuleList(ResidualConvUnit(channels) for _ in range(num_taps))

    def forward(self, taps: list[torch.Tensor]) -> torch.Tensor:
        b, _, h, w = taps[0].shape
        feats = []
        for tap, norm, proj, stride in zip(taps, self.norms, self.projs, self.strides, strict=True):
            x = proj(norm(tap.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
            size = (h * 32 // stride, w * 32 // stride)
            if size != (h, w):
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            feats.append(x)
        x = self.fuse[-1](feats[-1])
        for i in range(len(feats) - 2, -1, -1):
            x = F.interpolate(x, size=feats[i].shape[-2:], mode="bilinear", align_corners=False)
            x = self.fuse[i](x + feats[i])
        return x
