"""Small separable filters on (N, 1, H, W) tensors, shared by the classic methods."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _pad_reflect_or_replicate(x: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    # Reflect padding needs the pad to be smaller than the size; tiny images fall back to replicate.
    mode = "reflect" if pad_h < x.shape[-2] and pad_w < x.shape[-1] else "replicate"
    return F.pad(x, (pad_w, pad_w, pad_h, pad_h), mode=mode)


def separable_conv(x: torch.Tensor, kernel_1d: torch.Tensor) -> torch.Tensor:
    """Convolve every channel with the same symmetric 1D kernel along H then W (reflect borders)."""
    k = kernel_1d.to(dtype=x.dtype, device=x.device)
    r = k.numel() // 2
    c = x.shape[1]
    x = _pad_reflect_or_replicate(x, r, r)
    x = F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)


def gaussian_kernel_1d(sigma: float, radius: int | None = None) -> torch.Tensor:
    radius = int(round(3 * sigma)) if radius is None else radius
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).float()


def gaussian_blur(x: torch.Tensor, sigma: float, radius: int | None = None) -> torch.Tensor:
    return separable_conv(x, gaussian_kernel_1d(sigma, radius))


def _window_sums(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    size = x.shape[dim]
    idx = torch.arange(size, device=x.device)
    lo, hi = (idx - radius).clamp(0, size), (idx + radius + 1).clamp(0, size)
    pad = (1, 0) if dim == -1 else (0, 0, 1, 0)
    cum = F.pad(x, pad).cumsum(dim)
    return cum.index_select(dim, hi) - cum.index_select(dim, lo), (hi - lo)


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2r+1)^2 window clipped to the image, via separable cumulative sums: O(1) per pixel.

    Near the border the window is cut and the mean divides by the pixels actually inside (as in He et al.'s
    guided-filter code), so a constant image stays constant.
    """
    # Cumulative sums in float64: float32 running sums lose ~1e-5, which guided filtering with eps = 1e-6
    # amplifies into visible noise.
    rows, row_counts = _window_sums(x.double(), radius, -2)
    total, col_counts = _window_sums(rows, radius, -1)
    count = row_counts.view(-1, 1) * col_counts.view(1, -1)
    return (total / count.to(total.dtype)).to(x.dtype)


def guided_filter(guide: torch.Tensor, src: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """He, Sun & Tang, 'Guided image filtering', ECCV 2010 / TPAMI 2013 (grey guide)."""
    mean_i = box_mean(guide, radius)
    mean_p = box_mean(src, radius)
    cov_ip = box_mean(guide * src, radius) - mean_i * mean_p
    var_i = box_mean(guide * guide, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box_mean(a, radius) * guide + box_mean(b, radius)
