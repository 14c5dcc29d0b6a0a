"""Pixel-wise fusion rules: average, max-abs and PCA-weighted averaging."""
from __future__ import annotations

import torch


def fuse_average(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pixel-wise mean, the baseline of the fusion literature."""
    return (a + b) * 0.5


def fuse_max_abs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Choose-max: keep the coefficient of larger magnitude (Li, Manjunath & Mitra 1995)."""
    return torch.where(a.abs() >= b.abs(), a, b)


def fuse_pca(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PCA-weighted average (Naidu & Raol 2008), weights computed per slice.

    The two sources of a slice are treated as two variables; the principal eigenvector (v1, v2) of their
    2x2 covariance gives the weights w = |v| / sum|v|. A slice where both sources are constant gets 0.5/0.5.
    """
    n = a.shape[0]
    x = a.reshape(n, -1).double()
    y = b.reshape(n, -1).double()
    x = x - x.mean(1, keepdim=True)
    y = y - y.mean(1, keepdim=True)
    sxx, syy, sxy = (x * x).mean(1), (y * y).mean(1), (x * y).mean(1)
    # Principal eigenvector of [[sxx, sxy], [sxy, syy]] in closed form.
    lam = 0.5 * (sxx + syy) + torch.sqrt(0.25 * (sxx - syy) ** 2 + sxy ** 2)
    v1 = torch.where(sxy.abs() > 1e-12, sxy, torch.where(sxx >= syy, torch.ones_like(sxx), torch.zeros_like(sxx)))
    v2 = torch.where(sxy.abs() > 1e-12, lam - sxx, torch.where(sxx >= syy, torch.zeros_like(sxx), torch.ones_like(sxx)))
    total = v1.abs() + v2.abs()
    degenerate = total < 1e-12  # both sources constant on this slice
    w1 = torch.where(degenerate, torch.full_like(total, 0.5), v1.abs() / total.clamp_min(1e-12))
    w1 = w1.to(a.dtype).view(n, 1, 1, 1)
    return w1 * a + (1 - w1) * b


def build_average(device):
    return fuse_average


def build_max(device):
    return fuse_max_abs


def build_pca(device):
    return fuse_pca
