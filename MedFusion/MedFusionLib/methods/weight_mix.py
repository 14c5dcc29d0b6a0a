"""The output stage MedFusion-Net and SwinFusion-S share: a per-pixel weight from a soft pixel-max start mixes the
two sources, plus a bounded correction.

    w = sigmoid((a - b) / T0 + h0),   F = w a + (1 - w) b + R tanh(h1)

A network subclasses :class:`WeightMixOutput`, sets ``residual_bound`` (R) and implements ``heads(a, b)`` ->
(N, 2, H, W) raw maps (h0, h1); with a zero-initialised last layer the untrained network is the soft max rule.
"""
from __future__ import annotations

import torch
from torch import nn

T0 = 0.05  # temperature of the soft-max skip


class WeightMixOutput(nn.Module):
    residual_bound = 0.05

    def heads(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def maps(self, a: torch.Tensor, b: torch.Tensor):
        """The weight map w and the residual r (both (N, 1, H, W))."""
        out = self.heads(a, b)
        weight = torch.sigmoid((a - b) / T0 + out[:, :1])
        return weight, self.residual_bound * torch.tanh(out[:, 1:])

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The raw fused image (what the training losses see)."""
        weight, residual = self.maps(a, b)
        return weight * a + (1 - weight) * b + residual

    def fuse(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self(a, b).clamp(0.0, 1.0)
