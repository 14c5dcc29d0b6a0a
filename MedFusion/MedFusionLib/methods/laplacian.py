"""Laplacian-pyramid fusion: averaged base, max-abs details.

Burt & Adelson, 'The Laplacian pyramid as a compact image code', IEEE Trans. Commun. 31(4), 1983;
fusion by coefficient selection after Burt & Kolczynski, 'Enhanced image capture through fusion', ICCV 1993.
"""
from __future__ import annotations

import torch

from ._filters import separable_conv
from .pixelwise import fuse_max_abs

# Burt & Adelson's generating kernel with a = 0.375 (the binomial [1 4 6 4 1] / 16).
_KERNEL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _reduce(x: torch.Tensor) -> torch.Tensor:
    return separable_conv(x, _KERNEL)[..., ::2, ::2]


def _expand(x: torch.Tensor, size) -> torch.Tensor:
    up = torch.zeros(*x.shape[:-2], x.shape[-2] * 2, x.shape[-1] * 2, dtype=x.dtype, device=x.device)
    up[..., ::2, ::2] = x
    # Zero insertion keeps a quarter of the samples: multiply by 4 to preserve brightness.
    return separable_conv(up, _KERNEL * 2.0)[..., : size[0], : size[1]]


def laplacian_pyramid(x: torch.Tensor, levels: int):
    pyramid = []
    current = x
    for _ in range(levels):
        smaller = _reduce(current)
        pyramid.append(current - _expand(smaller, current.shape[-2:]))
        current = smaller
    pyramid.append(current)  # the base (low-pass residual)
    return pyramid


def collapse(pyramid):
    current = pyramid[-1]
    for detail in reversed(pyramid[:-1]):
        current = detail + _expand(current, detail.shape[-2:])
    return current


def max_levels(height: int, width: int) -> int:
    # Stop before a level gets smaller than the 5-tap kernel.
    levels, size = 0, min(height, width)
    while size >= 10:
        size = (size + 1) // 2
        levels += 1
    return levels


def build(device, levels: int = 4):
    """Method factory (see registry.py; ``levels`` >= 1 is checked there against its declaration)."""
    def fuse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        n_levels = max(1, min(levels, max_levels(*a.shape[-2:])))
        pa, pb = laplacian_pyramid(a, n_levels), laplacian_pyramid(b, n_levels)
        fused = [fuse_max_abs(da, db) for da, db in zip(pa[:-1], pb[:-1])]
        fused.append(0.5 * (pa[-1] + pb[-1]))
        return collapse(fused).clamp(0.0, 1.0)

    return fuse
