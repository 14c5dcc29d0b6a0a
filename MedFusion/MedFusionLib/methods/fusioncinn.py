r"""FusionCINN: medical image fusion with a conditional invertible neural network (seed paper 002).

Pipeline (paper Sec. 2.1, Eqs. 10-15), for sources a (anatomical reference) and b:

    c_a, c_b = Haar(a), Haar(b)                      fixed wavelet conditions, L = 4 levels, no parameters
    z_a|b = f(a; c_b),  z_b|a = f(b; c_a)            forward analysis, one flow with shared weights
    z_f = (z_a|b + z_b|a) / 2 + conv(z_a|b) * z_b|a  latent fusion: mean + RAM attention
    c_f = absmax(c_a, c_b)                           WCF: element-wise larger-magnitude wavelet coefficient
    x_f = f^-1(z_f; c_f)                             inverse synthesis, clamped to [0, 1]

The flow f (``ConditionalFlow``), as far as the garbled paper can be read ("4 convolutional invertible blocks
and 1 fully connected invertible block, with down-sampling after each coupling block"):

    level  Haar down-sampling   coupling (3x3 subnets)          condition        latent split-off
    1      1 -> 4 ch,  H/2      4 ch,  hidden 32                 c_1 (4 ch, H/2)   -
    2      4 -> 16 ch, H/4      16 ch, hidden 48                 c_2 (H/4)         8 ch  -> z_1 (H/4)
    3      8 -> 32 ch, H/8      32 ch, hidden 64                 c_3 (H/8)         16 ch -> z_2 (H/8)
    4      16 -> 64 ch, H/16    64 ch, hidden 96                 c_4 (H/16)        -
    FC     -                    64 ch, hidden 128, 1x1 subnets   c_4               all 64 ch -> z_3 (H/16)

Choices made where the paper is silent or impractical (written here because they change results):

* Down-sampling comes BEFORE each coupling: a one-channel image cannot be split for a coupling, so the first
  Haar step has to come first; the sequence is otherwise the paper's alternation of coupling and down-sampling.
* Each coupling transforms both channel halves in turn (Glow-style) and is followed by a fixed random channel
  permutation: with a single half-coupling the LL channel would pass every level untouched.
* The fully connected block works on a flattened fixed-size vector in the paper (128x128 inputs only). Here it
  is a coupling with 1x1-conv subnets, i.e. the same FC layers applied at every position of the coarsest level,
  so any image size works.
* Multi-scale split-off (half the channels leave at levels 2 and 3, as in RealNVP / cINN) keeps the deep levels
  small (weights ~3 MB); the latent has exactly as many values as the image.
* Conditions enter the subnets scaled by 2^-k at level k (the orthonormal LL_k lies in [0, 2^k]).
* RAM: one 3x3 conv (C -> C) per latent scale, zero-initialised, so training starts from the paper's plain
  average rule and learns the attention term.
* Sizes not divisible by 16 are reflect-padded and cropped back.
* Log-scales are soft-clamped to +-2 (exact inverse within float32 precision).

Training (see ``trainable``): there is no ground-truth fused image, so the forward target is built per pixel
from the sources (``fusion_target``; the choice is explained there).
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from .base import FusionMethod, count_parameters, with_shipped_weights  # noqa: F401 (count_parameters)
from .cinn_blocks import ChannelPermutation, ConditionalAffineCoupling, HaarDownsample, WaveletConditions

# Recorded in the weights manifest; change it whenever the layer layout changes.
ARCHITECTURE = ("fusioncinn-v1: 4 x (Haar down + conditional affine coupling 3x3) + 1x1 'FC' coupling; "
                "channels 4/16/32/64, hidden 32/48/64/96/128, split-off 8 @ L2, 16 @ L3; Haar conditions L=4; "
                "RAM 3x3 per latent scale; clamp 2")
LEVELS = 4
FACTOR = 2 ** LEVELS  # total down-sampling: image sides are padded to a multiple of this
# per level: (hidden width of the coupling subnets, channels split off into the latent after the level)
LEVEL_HIDDEN = (32, 48, 64, 96)
LEVEL_SPLIT = (0, 8, 16, 0)
FC_HIDDEN = 128
CLAMP = 2.0
COND_CHANNELS = 4  # LL, LH, HL, HH of one wavelet level


class ConditionalFlow(nn.Module):
    """f(x; c): (N, 1, H, W) image + wavelet conditions -> list of latent tensors and log|det J| (N,)."""

    def __init__(self):
        super().__init__()
        self.down = HaarDownsample()
        couplings, perms, channels, latent = [], [], 1, []
        for level, (hidden, split) in enumerate(zip(LEVEL_HIDDEN, LEVEL_SPLIT)):
            channels *= 4
            couplings.append(ConditionalAffineCoupling(channels, COND_CHANNELS, hidden, 3, CLAMP))
            perms.append(ChannelPermutation(channels, seed=level + 1))
            if split:
                latent.append(split)
                channels -= split
        self.couplings = nn.ModuleList(couplings)
        self.perms = nn.ModuleList(perms)
        self.fc = ConditionalAffineCoupling(channels, COND_CHANNELS, FC_HIDDEN, 1, CLAMP)
        latent.append(channels)
        self.latent_channels: Tuple[int, ...] = tuple(latent)

    @staticmethod
    def _scaled(conds: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        return [c * 0.5 ** (k + 1) for k, c in enumerate(conds)]

    def forward(self, x: torch.Tensor, conds: Sequence[torch.Tensor]):
        conds = self._scaled(conds)
        logdet = x.new_zeros(x.shape[0])
        latents, h = [], x
        for level, (coupling, perm) in enumerate(zip(self.couplings, self.perms)):
            h, _ = self.down(h)  # logdet 0 (orthonormal)
            h, ld = coupling(h, conds[level])
            logdet = logdet + ld
            h, _ = perm(h)
            split = LEVEL_SPLIT[level]
            if split:
                latents.append(h[:, :split])
                h = h[:, split:]
        h, ld = self.fc(h, conds[-1])
        latents.append(h)
        return latents, logdet + ld

    def inverse(self, latents: Sequence[torch.Tensor], conds: Sequence[torch.Tensor]) -> torch.Tensor:
        conds = self._scaled(conds)
        pending = list(latents)
        h = self.fc.inverse(pending.pop(), conds[-1])
        for level in reversed(range(len(self.couplings))):
            if LEVEL_SPLIT[level]:
                h = torch.cat([pending.pop(), h], dim=1)
            h = self.perms[level].inverse(h)
            h = self.couplings[level].inverse(h, conds[level])
            h = self.down.inverse(h)
        return h


def absmax(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Element-wise the value of larger magnitude (ties: u)."""
    return torch.where(u.abs() >= v.abs(), u, v)


def pad_to_multiple(x: torch.Tensor, factor: int = FACTOR) -> torch.Tensor:
    """Pad bottom/right so that H and W are multiples of ``factor`` (reflect; replicate for tiny images)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % factor, (-w) % factor
    if not ph and not pw:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


class FusionCINN(nn.Module):
    """Wavelet conditions + conditional flow + RAM latent fusion (see the module docstring)."""

    def __init__(self):
        super().__init__()
        self.wavelets = WaveletConditions(LEVELS)
        self.flow = ConditionalFlow()
        self.ram = nn.ModuleList(nn.Conv2d(c, c, 3, padding=1) for c in self.flow.latent_channels)
        for conv in self.ram:  # start as the plain average rule
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def fuse_latents(self, z_ab: Sequence[torch.Tensor], z_ba: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """z_f = (z_a|b + z_b|a) / 2 + conv(z_a|b) * z_b|a, per latent scale (paper Eqs. 11-13)."""
        return [0.5 * (u + v) + conv(u) * v for conv, u, v in zip(self.ram, z_ab, z_ba)]

    def analyse(self, a: torch.Tensor, b: torch.Tensor, extra: torch.Tensor = None):
        """Conditions and one batched forward pass: f(a; c_b), f(b; c_a) and, if given, f(extra; c_f).
        Returns (c_f, z_ab, z_ba, z_extra or None, logdets (k*N,))."""
        n = a.shape[0]
        c_a, c_b = self.wavelets(a), self.wavelets(b)
        c_f = [absmax(u, v) for u, v in zip(c_a, c_b)]
        images, conds = [a, b], [c_b, c_a]
        if extra is not None:
            images.append(extra)
            conds.append(c_f)
        z, logdet = self.flow(torch.cat(images), [torch.cat(level) for level in zip(*conds)])
        z_ab = [t[:n] for t in z]
        z_ba = [t[n:2 * n] for t in z]
        z_extra = [t[2 * n:] for t in z] if extra is not None else None
        return c_f, z_ab, z_ba, z_extra, logdet

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Raw fused image x_f = f^-1(z_f; c_f) (unclamped) for sides divisible by 16."""
        c_f, z_ab, z_ba, _, _ = self.analyse(a, b)
        return self.flow.inverse(self.fuse_latents(z_ab, z_ba), c_f)

    def fuse(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Any size: reflect-pad to a multiple of 16, fuse, crop back, clamp to [0, 1]."""
        h, w = a.shape[-2:]
        fused = self(pad_to_multiple(a), pad_to_multiple(b))
        return fused[..., :h, :w].clamp(0.0, 1.0)


def load_model(device="cpu", weights_dir=None) -> FusionCINN:
    """FusionCINN with the shipped weights (sha256-checked, ``weights_only=True``), in eval mode on ``device``."""
    return with_shipped_weights(FusionCINN(), "fusioncinn", device, weights_dir)


def build(device, *, weights_dir=None) -> FusionMethod:
    """Method factory (see registry.py)."""
    model = load_model(device, weights_dir)
    return FusionMethod("fusioncinn", model.fuse, model, device)
