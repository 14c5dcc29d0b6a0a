r"""Building blocks of EDPSN (Qu et al., Information Fusion 123: 103312, 2025): EEM, ED, MFB, AFM.

The paper describes these modules in a few sentences each (see METHODS.md); the exact operators below are
our choices where it is silent, written down next to the code.

EEM — edge enhancement by the central concentration gradient (CCG)
------------------------------------------------------------------
The paper: the colour functional image goes to HSI, the I channel gets a CCG map, the map is ADDED to I, and
(H, S, I + CCG) goes back to RGB. It does not print the CCG operator. We read "central concentration gradient"
as the gradient concentrated on the centre pixel of its 3x3 neighbourhood: the mean of the eight directional
differences from the centre to its neighbours,

    CCG(I)(x) = 1/8 * sum_{n in N8(x)} (I(x) - I(n)) = I(x) - mean_{N8(x)} I,        (replicated borders)

i.e. the central-difference aggregation of Yu et al.'s Central Difference Convolution (CVPR 2020) with uniform
weights, which is also the negative 8-neighbour Laplacian divided by 8 (Gonzalez & Woods, Digital Image
Processing, 3rd ed., Sec. 3.6.2). The signed map is positive on the bright side of an edge and negative on the
dark side, so I' = I + w * CCG(I) (w = 1: "added", the paper's wording) steepens edges without the double halo
that adding a gradient MAGNITUDE would paint on both sides. I' is clipped to [0, 1].

HSI is Gonzalez & Woods' model: I = (R + G + B) / 3, S = 1 - min(R, G, B) / I, H = the angle
atan2(sqrt(3) (G - B), 2R - G - B) in [0, 2 pi) (the same angle as their arccos formula, but exact near grey
pixels), inverted sector by sector. :func:`eem_rgb` is the full module on RGB arrays. With H and S fixed, the
inverse is linear in I, so EEM scales each pixel's RGB by I'/I; values pushed above 1 are clipped (HSI gamut).

How this meets the engine's YCbCr path. MedFusion hands a method GREY batches: for a pseudo-colour PET/SPECT
it passes the BT.601 luma Y = 0.299 R + 0.587 G + 0.114 B and puts Cb, Cr back after fusion (engine.py,
colour.py). Inside ``fuse(a, b)`` EEM therefore applies the same CCG enhancement to the grey functional input:
b' = clip(b + w CCG(b), 0, 1) (:func:`eem_grey`). For a grey image (R = G = B, so S = 0 and Y = I) this IS the
HSI module exactly; for a colour image the two differ only in which intensity is sharpened (Y weights G more
than I = mean(R, G, B)) and in how colour is kept (HSI keeps the ratios R:G:B, i.e. scales chroma with I; the
engine keeps Cb, Cr as they were). Both sharpen brightness edges and leave hue alone.

ED — entropy-aware division
---------------------------
Local entropy over the 3x3 neighbourhood of every pixel ("entropy convolution"), on the image quantised to
``ENTROPY_LEVELS`` = 16 grey levels (bins of 16/255): with 256 levels the few-grey-level noise of smooth MR
tissue alone makes almost every tissue window near the maximum log2(9) and the map stops separating smooth
tissue from edges; 16 levels keep background at 0, smooth tissue low-to-medium and edges high. Vectorised
without a histogram: with c_k the number of the 9 window values equal to value k,
H = -sum_bins p log2 p = -(1/9) sum_k log2(c_k / 9).

Thresholds: per image, three-class Otsu (Liao, Chen & Chung's multi-level Otsu, J. Inf. Sci. Eng. 17, 2001)
on a 64-bin histogram of the entropy map over [0, log2 9]: the two thresholds maximise the between-class
variance. Why Otsu and not mean +- k std: the entropy histogram of these slices is strongly multi-modal (a big
spike at 0 from the black background, a broad tissue mode, a tail of edges), which mean +- k std models badly
and which leaves k to tune; Otsu adapts to each image with no parameter, and the bins make the two classes
boundaries exact, so the three masks partition the image by construction (low: bin <= t1, medium:
t1 < bin <= t2, high: bin > t2). In the network the division is made on the joint map max(E_a, E_b'): a pixel
is as informative as the more informative source there.

MFB / AFM — the paths of dynamic path selection (DPS)
-----------------------------------------------------
MFB (multi-scale feature fusion block): three parallel 3x3 convs with dilation 1, 2, 3 (receptive fields 3, 5,
7), concatenated, fused by a 1x1 conv, plus a residual connection. AFM (adaptive fusion module): a stack of MFBs
and a 3x3 conv. DPS gives each entropy level its own AFM; following the paper's ablation ("network structures of
different levels for regions of different information") the depth grows with the information level: 1, 2 and 3
MFBs for the low, medium and high-entropy paths.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

ENTROPY_LEVELS = 16  # grey levels of the quantised image the local entropy is computed on (see docstring)
ENTROPY_BINS = 64  # histogram bins of the entropy map for the three-class Otsu thresholds
MAX_ENTROPY = math.log2(9.0)  # 9 distinct values in a 3x3 window


# ------------------------------------------------------------------------------------------------- EEM
def central_concentration_gradient(x: torch.Tensor) -> torch.Tensor:
    """CCG of (N, 1, H, W) intensities: x - mean of the 8 neighbours (replicated borders); see the docstring."""
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    neighbour_sum = F.avg_pool2d(padded, 3, stride=1) * 9.0 - x
    return x - neighbour_sum / 8.0


def eem_grey(x: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """EEM on a grey (N, 1, H, W) image in [0, 1]: clip(x + weight * CCG(x), 0, 1)."""
    if weight == 0:
        return x
    return (x + weight * central_concentration_gradient(x)).clamp(0.0, 1.0)


def rgb_to_hsi(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) RGB in [0, 1] -> (..., 3) float64 HSI: H in [0, 1) (fraction of a turn), S and I in [0, 1].

    Gonzalez & Woods' HSI; H = 0 and S = 0 where undefined (grey pixels, black pixels)."""
    rgb = np.asarray(rgb, dtype=np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    intensity = (r + g + b) / 3.0
    minimum = np.minimum(np.minimum(r, g), b)
    with np.errstate(divide="ignore", invalid="ignore"):
        saturation = np.where(intensity > 0, 1.0 - minimum / intensity, 0.0)
    hue = np.arctan2(np.sqrt(3.0) * (g - b), 2.0 * r - g - b)  # = arccos form of G&W, quadrant-exact
    hue = np.mod(hue, 2.0 * np.pi) / (2.0 * np.pi)
    hue = np.where(saturation > 0, hue, 0.0)
    hue = np.where(hue >= 1.0, 0.0, hue)  # mod can round up to exactly one turn
    return np.stack([hue, saturation, intensity], axis=-1)


def hsi_to_rgb(hsi: np.ndarray, clip: bool = True) -> np.ndarray:
    """Inverse of :func:`rgb_to_hsi` (sector formulas of Gonzalez & Woods), float64; clipped to [0, 1] unless
    ``clip=False`` (an enhanced I can leave the RGB gamut)."""
    hsi = np.asarray(hsi, dtype=np.float64)
    hue = np.mod(hsi[..., 0], 1.0) * 2.0 * np.pi
    s, i = hsi[..., 1], hsi[..., 2]
    sector = np.minimum((hue // (2.0 * np.pi / 3.0)).astype(np.int64), 2)
    h = hue - sector * (2.0 * np.pi / 3.0)  # angle within the sector, [0, 2 pi / 3)
    low = i * (1.0 - s)
    high = i * (1.0 + s * np.cos(h) / np.cos(np.pi / 3.0 - h))
    third = 3.0 * i - low - high
    # sector 0 (RG): (R, G, B) = (high, third, low); 1 (GB): (low, high, third); 2 (BR): (third, low, high)
    r = np.choose(sector, [high, low, third])
    g = np.choose(sector, [third, high, low])
    b = np.choose(sector, [low, third, high])
    rgb = np.stack([r, g, b], axis=-1)
    return np.clip(rgb, 0.0, 1.0) if clip else rgb


def eem_rgb(rgb: np.ndarray, weight: float = 1.0) -> np.ndarray:
    """The paper's EEM on an (H, W, 3) RGB image in [0, 1]: HSI, I' = clip(I + weight CCG(I), 0, 1), back to RGB
    (clipped to [0, 1]); float32. Grey input (R = G = B) gives exactly :func:`eem_grey` on each channel."""
    hsi = rgb_to_hsi(rgb)
    intensity = torch.from_numpy(np.ascontiguousarray(hsi[..., 2]))[None, None]
    hsi[..., 2] = eem_grey(intensity, weight)[0, 0].numpy()
    return hsi_to_rgb(hsi).astype(np.float32)


# -------------------------------------------------------------------------------------------------- ED
def local_entropy(x: torch.Tensor, levels: int = ENTROPY_LEVELS) -> torch.Tensor:
    """Shannon entropy (bits) of the 3x3 neighbourhood of every pixel of (N, 1, H, W) values in [0, 1],
    quantised to ``levels`` grey levels, replicated borders. Vectorised: -(1/9) sum_k log2(c_k / 9), c_k = how
    many of the 9 window values equal value k (see the module docstring)."""
    n, _, h, w = x.shape
    q = (x * levels).floor().clamp_(0, levels - 1)
    windows = F.unfold(F.pad(q, (1, 1, 1, 1), mode="replicate"), 3)  # (N, 9, H*W)
    # c_k for the 9 window positions k, one position at a time (memory (N, 9, H*W), not (N, 9, 9, H*W))
    entropy = torch.zeros(n, h * w, dtype=x.dtype, device=x.device)
    for k in range(9):
        counts = (windows == windows[:, k:k + 1]).sum(1, dtype=x.dtype)
        entropy -= torch.log2(counts / 9.0)
    entropy /= 9.0
    return entropy.clamp_min_(0.0).view(n, 1, h, w)  # clamp: -0.0 from log2(1)


def otsu3_bins(entropy: torch.Tensor, bins: int = ENTROPY_BINS, top: float = MAX_ENTROPY):
    """Per image, three-class Otsu on a ``bins``-bin histogram of (N, 1, H, W) values in [0, top].

    Returns (bin_index (N, 1, H, W) long, t1 (N,), t2 (N,)): class low = bin <= t1, medium = t1 < bin <= t2,
    high = bin > t2, with t1 < t2 maximising w0 m0^2 + w1 m1^2 + w2 m2^2 (the between-class variance up to a
    constant). Exhaustive over all bin pairs; ties go to the first pair (deterministic)."""
    n = entropy.shape[0]
    index = (entropy / top * bins).floor().clamp_(0, bins - 1).long()
    hist = torch.zeros(n, bins, dtype=torch.float64, device=entropy.device)
    hist.scatter_add_(1, index.view(n, -1), torch.ones(index.view(n, -1).shape, dtype=torch.float64,
                                                           device=entropy.device))
    p = hist / hist.sum(1, keepdim=True)
    centres = (torch.arange(bins, dtype=torch.float64, device=entropy.device) + 0.5) * (top / bins)
    w_cum, m_cum = p.cumsum(1), (p * centres).cumsum(1)  # class 0 = bins [0..i]
    w_all, m_all = w_cum[:, -1:], m_cum[:, -1:]
    w0, m0 = w_cum[:, :, None], m_cum[:, :, None]  # (N, i, 1)
    w01, m01 = w_cum[:, None, :], m_cum[:, None, :]  # (N, 1, j)
    w1, m1 = w01 - w0, m01 - m0
    w2, m2 = (w_all - w_cum)[:, None, :], (m_all - m_cum)[:, None, :]

    def term(w, m):
        return torch.where(w > 1e-12, m * m / w.clamp_min(1e-12), torch.zeros_like(m))

    score = term(w0, m0) + term(w1, m1) + term(w2, m2)  # (N, bins, bins)
    valid = torch.ones(bins, bins, dtype=torch.bool, device=entropy.device).triu(1)  # i < j
    score = torch.where(valid, score, torch.full_like(score, -1.0))
    best = score.view(n, -1).argmax(1)
    return index, best // bins, best % bins


def entropy_masks(entropy: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) entropy map -> (N, 3, H, W) float {0, 1} masks low / medium / high (a partition)."""
    index, t1, t2 = otsu3_bins(entropy)
    t1, t2 = t1.view(-1, 1, 1, 1), t2.view(-1, 1, 1, 1)
    low = index <= t1
    high = index > t2
    medium = ~low & ~high
    return torch.cat([low, medium, high], dim=1).to(entropy.dtype)


# ----------------------------------------------------------------------------------------- MFB / AFM
def _act(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


class MFB(nn.Module):
    """Multi-scale feature fusion block: 3x3 convs with dilation 1, 2, 3 in parallel (C -> C/2 each),
    concatenated, 1x1 conv back to C, plus the input (residual)."""

    DILATIONS = (1, 2, 3)

    def __init__(self, channels: int):
        super().__init__()
        half = channels // 2
        self.branches = nn.ModuleList(nn.Conv2d(channels, half, 3, padding=d, dilation=d) for d in self.DILATIONS)
        self.fuse = nn.Conv2d(half * len(self.DILATIONS), channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        multi = torch.cat([_act(branch(x)) for branch in self.branches], dim=1)
        return x + self.fuse(multi)


class AFM(nn.Module):
    """Adaptive fusion module: ``depth`` MFBs, then a 3x3 conv (one DPS path)."""

    def __init__(self, channels: int, depth: int):
        super().__init__()
        self.blocks = nn.Sequential(*(MFB(channels) for _ in range(depth)))
        self.out = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _act(self.out(self.blocks(x)))
