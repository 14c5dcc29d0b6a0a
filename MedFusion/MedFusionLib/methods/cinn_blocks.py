"""Invertible building blocks of FusionCINN (conditional invertible neural network).

Every invertible block maps ``forward(x, ...) -> (y, logdet)`` with ``logdet`` of shape (N,) =
log|det dy/dx| per sample, and has an exact ``inverse(y, ...) -> x``:

* ``HaarDownsample``: orthonormal 2x2 Haar transform with stride 2, C -> 4C channels at half size. Orthonormal,
  so |det| = 1 and logdet = 0; its inverse is the transposed convolution.
* ``ChannelPermutation``: a fixed random channel order (logdet 0), so that successive couplings split the
  channels differently.
* ``ConditionalAffineCoupling``: Glow/RealNVP-style affine coupling whose scale and shift come from a subnet of
  (the other half, the external condition); both halves are transformed in turn. Log-scales are soft-clamped,
  s -> clamp * tanh(s / clamp), which bounds exp(+-s) and so keeps the inverse numerically exact.
* ``WaveletConditions``: NOT invertible, not trained: the fixed Haar decomposition over L levels that the
  paper uses as the condition vectors.

Haar sub-band order, for each 2x2 block [[p, q], [r, s]] (rows top to bottom):
LL = (p + q + r + s) / 2, LH = (p - q + r - s) / 2 (detail across columns), HL = (p + q - r - s) / 2 (detail
across rows), HH = (p - q - r + s) / 2.
"""
from __future__ import annotations

from typing import List, Tuple

import torch
from torch import nn
from torch.nn import functional as F


def haar_filters(dtype=torch.float32) -> torch.Tensor:
    """(4, 1, 2, 2) orthonormal Haar analysis filters in the order LL, LH, HL, HH (see module docstring)."""
    filters = torch.tensor([[[1.0, 1.0], [1.0, 1.0]],
                            [[1.0, -1.0], [1.0, -1.0]],
                            [[1.0, 1.0], [-1.0, -1.0]],
                            [[1.0, -1.0], [-1.0, 1.0]]], dtype=dtype)
    return (0.5 * filters).unsqueeze(1)


class HaarDownsample(nn.Module):
    """Invertible down-sampling (N, C, H, W) -> (N, 4C, H/2, W/2); channel 4i + j is sub-band j of input i."""

    def __init__(self):
        super().__init__()
        # A constant of the transform, not a weight: kept out of the state dict.
        self.register_buffer("filters", haar_filters(), persistent=False)

    def _bank(self, channels: int, like: torch.Tensor) -> torch.Tensor:
        return self.filters.to(like.dtype).repeat(channels, 1, 1, 1)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        c = x.shape[1]
        y = F.conv2d(x, self._bank(c, x), stride=2, groups=c)
        return y, x.new_zeros(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        c = y.shape[1] // 4
        return F.conv_transpose2d(y, self._bank(c, y), stride=2, groups=c)


class WaveletConditions(nn.Module):
    """Fixed multi-level Haar decomposition: x (N, 1, H, W) -> [c_1, ..., c_L], c_k = (N, 4, H/2^k, W/2^k) holding
    LL_k, LH_k, HL_k, HH_k; level k + 1 decomposes LL_k. No trainable parameters (a buffer only)."""

    def __init__(self, levels: int):
        super().__init__()
        self.levels = int(levels)
        self.register_buffer("filters", haar_filters(), persistent=False)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        if x.shape[1] != 1:
            raise ValueError(f"WaveletConditions expects one-channel images, not {x.shape[1]} channels.")
        filters = self.filters.to(x.dtype)
        out, low = [], x
        for _ in range(self.levels):
            coeffs = F.conv2d(low, filters, stride=2)
            out.append(coeffs)
            low = coeffs[:, :1]
        return out


class ChannelPermutation(nn.Module):
    """A fixed channel shuffle drawn from ``seed``; the permutation is stored with the weights."""

    def __init__(self, channels: int, seed: int):
        super().__init__()
        perm = torch.randperm(channels, generator=torch.Generator().manual_seed(int(seed)))
        self.register_buffer("perm", perm)
        self.register_buffer("inverse_perm", torch.argsort(perm))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return x[:, self.perm], x.new_zeros(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y[:, self.inverse_perm]


def coupling_subnet(in_channels: int, out_channels: int, hidden: int, kernel_size: int) -> nn.Sequential:
    """conv-ReLU-conv-ReLU-conv; the last conv starts at zero so that every coupling starts as the identity."""
    pad = kernel_size // 2
    last = nn.Conv2d(hidden, out_channels, kernel_size, padding=pad)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(nn.Conv2d(in_channels, hidden, kernel_size, padding=pad), nn.ReLU(inplace=True),
                         nn.Conv2d(hidden, hidden, kernel_size, padding=pad), nn.ReLU(inplace=True), last)


class ConditionalAffineCoupling(nn.Module):
    """Affine coupling conditioned on external features (both halves transformed, Glow-style):

        y2 = x2 * exp(s2(x1, c)) + t2(x1, c)
        y1 = x1 * exp(s1(y2, c)) + t1(y2, c)          logdet = sum(s1) + sum(s2)

    ``kernel_size=1`` gives a per-position fully connected coupling (used for the paper's FC block).
    """

    def __init__(self, channels: int, cond_channels: int, hidden: int, kernel_size: int = 3, clamp: float = 2.0):
        super().__init__()
        if channels < 2:
            raise ValueError("A coupling needs at least two channels to split.")
        self.split = channels // 2
        c1, c2 = self.split, channels - self.split
        self.clamp = float(clamp)
        self.net2 = coupling_subnet(c1 + cond_channels, 2 * c2, hidden, kernel_size)  # affine of x2 from x1
        self.net1 = coupling_subnet(c2 + cond_channels, 2 * c1, hidden, kernel_size)  # affine of x1 from y2

    def _scale_shift(self, net: nn.Module, x: torch.Tensor, cond: torch.Tensor):
        s, t = net(torch.cat([x, cond], dim=1)).chunk(2, dim=1)
        return self.clamp * torch.tanh(s / self.clamp), t

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x1, x2 = x[:, :self.split], x[:, self.split:]
        s2, t2 = self._scale_shift(self.net2, x1, cond)
        y2 = x2 * torch.exp(s2) + t2
        s1, t1 = self._scale_shift(self.net1, y2, cond)
        y1 = x1 * torch.exp(s1) + t1
        logdet = s1.flatten(1).sum(1) + s2.flatten(1).sum(1)
        return torch.cat([y1, y2], dim=1), logdet

    def inverse(self, y: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        y1, y2 = y[:, :self.split], y[:, self.split:]
        s1, t1 = self._scale_shift(self.net1, y2, cond)
        x1 = (y1 - t1) * torch.exp(-s1)
        s2, t2 = self._scale_shift(self.net2, x1, cond)
        x2 = (y2 - t2) * torch.exp(-s2)
        return torch.cat([x1, x2], dim=1)
