"""Mixture-of-Adapters: a few bottleneck experts mixed per token by a soft gate.

Soft, deterministic gating (softmax with temperature, no top-k, no noise) keeps
the adapter differentiable everywhere and the network's output reproducible;
the paper uses no load-balancing loss, so the gate weights are returned for
monitoring (entropy) only.
"""

from __future__ import annotations

import torch
from torch import nn


class Expert(nn.Sequential):
    """Bottleneck MLP ``Linear(d→h) → GELU → Linear(h→d)``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class MixtureOfAdapters(nn.Module):
    """``x + Σ_k g_k(x) · E_k(x)`` with ``g = softmax(gate(x) / τ)`` per token."""

    def __init__(self, dim: int = 768, num_experts: int = 4, hidden: int = 64, gate_hidden: int = 128,
                 temperature: float = 2.0) -> None:
        super().__init__()
        self.temperature = temperature
        self.experts = nn.ModuleList(Expert(dim, hidden) for _ in range(num_experts))
        self.gate = nn.Sequential(nn.Linear(dim, gate_hidden), nn.ReLU(), nn.Linear(gate_hidden, num_experts))

    def gate_weights(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, K) mixing weights, summing to 1 over K."""
        return torch.softmax(self.gate(x) / self.temperature, dim=-1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, T, D) tokens → (adapted tokens (B, T, D), gate weights (B, T, K))."""
        g = self.gate_weights(x)
        out = x
        for k, expert in enumerate(self.experts):  # accumulate: no (B, T, D, K) stack to reduce over K
            out = out + g[..., k : k + 1] * expert(x)
        return out, g


def gate_entropy(gates: torch.Tensor) -> torch.Tensor:
    """Mean per-token entropy of gate weights (nats); log(K) means the gate does not choose."""
    return -(gates.clamp_min(1e-12).log() * gates).sum(-1).mean()
