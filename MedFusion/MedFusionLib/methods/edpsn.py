r"""EDPSN: entropy-aware dynamic path selection network (Qu, Huang, Shi, Liu & Tang, Information Fusion 123:
103312, 2025; seed paper 004). The modules (EEM, ED, MFB, AFM) and the choices behind them are documented in
``edpsn_modules.py``; this file holds the network and the method factory; its training objective (below) is in
MedFusionTraining/edpsn.py.

Forward pass of ``EDPSN(a, b)`` on (N, 1, H, W) batches in [0, 1] (``a`` the anatomical reference, ``b`` the
second / functional source, grey or the luma Y of a pseudo-colour image):

1. EEM: b' = clip(b + w CCG(b), 0, 1)  (w = ``eem_weight``, 1 by default; fixed operator, no parameters).
2. ED: entropy map E = max(E_3x3(a), E_3x3(b')); per-image three-class Otsu -> masks M_low, M_med, M_high
   (a partition of the pixels; computed without gradients).
3. Shallow features S = LReLU(conv3x3(2 -> C)([a, b'])), C = 16.
4. DPS: path k gets S * M_k (element-wise; the masks select the region of its entropy level) and runs its own
   AFM: depth 1, 2, 3 MFBs for low, medium, high entropy (more capacity where there is more information).
5. Merge: LReLU(conv1x1(3C -> C)([P_low, P_med, P_high])) + S, then conv3x3 C -> C, LReLU, conv3x3 C -> 1: the
   fused image (linear output: the loss sees it raw; ``fuse`` clamps it to [0, 1]).

Training objective (no ground truth; paper: "MSE + gradient loss + perceptual loss between inputs, fused
features and fused image"), for fused F and the ORIGINAL sources A, B (the references the metrics use):

    L = mean((F - max(A, B))^2)                                             intensity (MSE)
      + GRAD_WEIGHT * mean(|Sx F - Tx| + |Sy F - Ty|),  T = per-direction max-abs of (S A, S B)  gradient
      + PERCEPTUAL_WEIGHT * mean((phi(F) - max(phi(A), phi(B)))^2)          perceptual

S = Sobel (replicated borders), Tx = Sx A where |Sx A| >= |Sx B| else Sx B (likewise y): the fused image
should carry the stronger edge of the two sources with its sign (orientation). phi = the encoder of OUR
MFEnet (methods/mfenet.py, C1-C6, 64 channels), frozen, loaded from the shipped, sha256-checked weights: a
perceptual loss usually uses ImageNet VGG features, which cannot be downloaded here, so we use a feature
extractor this project trained itself on the same Harvard training cases (never on validation cases). Its
features are non-negative (ReLU), so max(phi(A), phi(B)) is MFEnet's own max-abs fusion rule in feature space.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .base import FusionMethod, count_parameters, with_shipped_weights  # noqa: F401 (count_parameters)
from .edpsn_modules import AFM, eem_grey, entropy_masks, local_entropy

# Recorded in the weights manifest; change it whenever the layer layout or the fixed operators change.
ARCHITECTURE = ("edpsn-v1: EEM (CCG on b) + ED (3x3 entropy on 16 levels, 3-class Otsu on max(E_a, E_b')) + "
                "shallow conv 2->16 + DPS (AFM depth 1/2/3 of MFB dilations 1,2,3) + merge + head 16->1")
CHANNELS = 16
PATH_DEPTHS = (1, 2, 3)  # MFBs per path: low, medium, high entropy


class EDPSN(nn.Module):
    """The fusion network; ``forward(a, b)`` returns the raw fused image (N, 1, H, W)."""

    def __init__(self, channels: int = CHANNELS, eem_weight: float = 1.0):
        super().__init__()
        self.eem_weight = float(eem_weight)  # a fixed operator's strength, not a parameter
        self.shallow = nn.Conv2d(2, channels, 3, padding=1)
        self.paths = nn.ModuleList(AFM(channels, depth) for depth in PATH_DEPTHS)
        self.merge = nn.Conv2d(channels * len(PATH_DEPTHS), channels, 1)
        self.head1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.head2 = nn.Conv2d(channels, 1, 3, padding=1)

    def divide(self, a: torch.Tensor, b_enhanced: torch.Tensor) -> torch.Tensor:
        """ED: (N, 3, H, W) masks low / medium / high entropy of the joint map max(E_a, E_b')."""
        with torch.no_grad():
            return entropy_masks(torch.maximum(local_entropy(a), local_entropy(b_enhanced)))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        b_enhanced = eem_grey(b, self.eem_weight)
        masks = self.divide(a, b_enhanced)
        # channels_last: oneDNN's fast path for these thin convs on the CPU (about 3x faster than NCHW here)
        sources = torch.cat([a, b_enhanced], dim=1).contiguous(memory_format=torch.channels_last)
        shallow = F.leaky_relu(self.shallow(sources), 0.2)
        outputs = [path(shallow * masks[:, k:k + 1]) for k, path in enumerate(self.paths)]
        merged = F.leaky_relu(self.merge(torch.cat(outputs, dim=1)), 0.2) + shallow
        return self.head2(F.leaky_relu(self.head1(merged), 0.2)).contiguous()


def load_model(device="cpu", weights_dir=None, eem_weight: float = 1.0) -> EDPSN:
    """EDPSN with the shipped weights (sha256-checked, ``weights_only=True``), in eval mode on ``device``."""
    model = with_shipped_weights(EDPSN(eem_weight=eem_weight), "edpsn", device, weights_dir)
    return model.to(memory_format=torch.channels_last)


def build(device, eem_weight: float = 1.0, *, weights_dir=None) -> FusionMethod:
    """Method factory (see registry.py; options checked there against their declaration)."""
    model = load_model(device, weights_dir, eem_weight)
    return FusionMethod("edpsn", model, model, device)  # the module is the fuse function; FusionMethod clamps
