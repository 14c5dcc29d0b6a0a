"""Guided-filtering fusion (GFF).

Li, Kang & Hu, 'Image fusion with guided filtering', IEEE Trans. Image Process. 22(7):2864-2875, 2013.
Parameters are the paper's defaults: base by a 31x31 mean filter; saliency |Laplacian| smoothed by an
11x11 Gaussian (r_g = 5, sigma_g = 5); guided filters r1 = 45, eps1 = 0.3 (base) and r2 = 7, eps2 = 1e-6
(detail).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._filters import box_mean, gaussian_blur, guided_filter

_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)


def _saliency(x: torch.Tensor) -> torch.Tensor:
    high_pass = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), _LAPLACIAN.to(x.device, x.dtype))
    return gaussian_blur(high_pass.abs(), sigma=5.0, radius=5)


def _normalised(w_a: torch.Tensor, w_b: torch.Tensor):
    total = w_a + w_b
    # Where both weights vanish (flat background) fall back to equal weights.
    safe = total.abs() > 1e-8
    return torch.where(safe, w_a / torch.where(safe, total, torch.ones_like(total)), torch.full_like(total, 0.5))


def build(device):
    def fuse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        base_a, base_b = box_mean(a, 15), box_mean(b, 15)
        detail_a, detail_b = a - base_a, b - base_b
        sal_a, sal_b = _saliency(a), _saliency(b)
        p_a = (sal_a >= sal_b).to(a.dtype)
        p_b = (sal_b >= sal_a).to(a.dtype)
        wb_a = _normalised(guided_filter(a, p_a, 45, 0.3), guided_filter(b, p_b, 45, 0.3))
        wd_a = _normalised(guided_filter(a, p_a, 7, 1e-6), guided_filter(b, p_b, 7, 1e-6))
        fused = wb_a * base_a + (1 - wb_a) * base_b + wd_a * detail_a + (1 - wd_a) * detail_b
        return fused.clamp(0.0, 1.0)

    return fuse
