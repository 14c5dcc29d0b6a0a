r"""ResNet-ZCA: deep-feature fusion after Li, Wu & Durrani 2019 (inference only; the encoder's training is in
``MedFusionTraining/resnetzca.py``).

Follows Li, Wu & Durrani, 'Infrared and visible image fusion with ResNet and zero-phase component analysis',
Infrared Physics & Technology 102: 103039, 2019, doi:10.1016/j.infrared.2019.103039:

1. Deep features Phi_k (C x n, n = h w positions) of each source k from a ResNet encoder.
2. ZCA: Co_k = Phi_k Phi_k^T / n = U S U^T (eigen-decomposition), Phi^_k = U (S + eps I)^(-1/2) U^T Phi_k.
3. Initial weight map: the l1-norm over channels of Phi^_k at each position, averaged over a (2t+1)^2 block
   (t = 1).
4. Final weight maps: bicubic upsampling to the source size, W_k = C_k / (C_1 + C_2).
5. Fusion (``scales="one"``, the default and the paper's): F = W_1 I_1 + W_2 I_2. ``scales="two"``: base
   B_k = 31x31 mean of I_k, detail D_k = I_k - B_k, F = (B_1 + B_2) / 2 + W_1 D_1 + W_2 D_2 (the base/detail
   split of the same group's VGG-19 framework, Li, Wu & Kittler, ICPR 2018); it measured slightly lower Q_AB/F
   and SF on the validation pairs (README, "Transformer and deep-feature networks").

The encoder (ResNet-style basic blocks, He et al. CVPR 2016):

    stem      3x3 1->16, LeakyReLU 0.1                       H x W
    stage 1   basic block 16 (3x3, 3x3, identity)            H x W
    stage 2   basic block 16->32, stride 2 (1x1 projection)  H/2
    stage 3   basic block 32->64, stride 2 (1x1 projection)  H/4      <- Phi: 64 channels

and, for training only, a decoder (bilinear x2, 3x3 64->32; bilinear x2, 3x3 32->16; 3x3 16->1).

Where it departs from the paper, and why:

* The encoder: the paper uses ImageNet-trained ResNet50 (features of its deeper blocks). ImageNet weights cannot
  be downloaded here, and a 25M-parameter network would be slow on CPU; so a 3-stage ResNet-style encoder
  (76,768 parameters) is trained by this project as an autoencoder on the training cases' single images
  (DenseFuse's pixel + SSIM loss, Li & Wu, IEEE TIP 2019, from the same group; MedFusionTraining/resnetzca.py),
  and its decoder is discarded for fusion.
* Grey scale: the paper copies a grey image into ResNet50's three input channels; our encoder takes one channel.
* ZCA's covariance is divided by n (the paper's Phi Phi^T is not), and eps = 1e-3 x the mean eigenvalue + 1e-10,
  so that the same eps suits every slice's scale; a slice without signal (all zero) gets equal weights.
* The two-scale split (see 5.) is an option beside the paper's one-scale weighted sum.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .base import FusionMethod, count_parameters, with_shipped_weights  # noqa: F401 (count_parameters)

ARCHITECTURE = ("resnetzca-v1: encoder stem 3x3 1-16, basic blocks 16 @1, 16-32 /2, 32-64 /2 (1x1 projections), "
                "LeakyReLU 0.1; decoder (training only) up2 3x3 64-32, up2 3x3 32-16, 3x3 16-1; fusion: ZCA of "
                "the 64 features, l1-norm, 3x3 block mean, bicubic up, W_k = C_k / sum C")
WIDTHS = (16, 32, 64)
BLOCK_RADIUS = 1  # t: the l1-norm is averaged over (2t+1)^2 positions
ZCA_EPS = 1e-3  # relative to the mean eigenvalue of the feature covariance
BASE_SIZE = 31  # mean filter of the two-scale split (as GFF's)


def _conv(c_in, c_out, k=3, stride=1):
    return nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, padding_mode="replicate")


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions and the (projected when the shape changes) input added."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1, self.conv2 = _conv(c_in, c_out, stride=stride), _conv(c_out, c_out)
        self.act = nn.LeakyReLU(0.1)
        self.project = (nn.Conv2d(c_in, c_out, 1, stride=stride) if stride != 1 or c_in != c_out else nn.Identity())

    def forward(self, x):
        return self.act(self.project(x) + self.conv2(self.act(self.conv1(x))))


class ResNetAutoencoder(nn.Module):
    """The encoder (``features``) and its training decoder (``forward`` reconstructs); ``fuse`` fuses two sources
    with the ZCA / l1-norm weights of the module docstring."""

    def __init__(self, scales: str = "one"):
        super().__init__()
        c1, c2, c3 = WIDTHS
        act = lambda: nn.LeakyReLU(0.1)  # noqa: E731
        self.encoder = nn.Sequential(_conv(1, c1), act(), BasicBlock(c1, c1), BasicBlock(c1, c2, 2),
                                     BasicBlock(c2, c3, 2))
        self.up1 = nn.Sequential(_conv(c3, c2), act())
        self.up2 = nn.Sequential(_conv(c2, c1), act())
        self.out = _conv(c1, 1)
        self.scales = scales

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        phi = self.features(x)
        mid = self.up1(F.interpolate(phi, size=((h + 1) // 2, (w + 1) // 2), mode="bilinear", align_corners=False))
        return self.out(self.up2(F.interpolate(mid, size=(h, w), mode="bilinear", align_corners=False)))

    def weights(self, a: torch.Tensor, b: torch.Tensor):
        """The final weight maps (W_a, W_b), each (N, 1, H, W), summing to 1."""
        size = a.shape[-2:]
        activity = [upsampled_activity(self.features(x), size) for x in (a, b)]
        total = activity[0] + activity[1]
        w_a = torch.where(total > 0, activity[0] / total.clamp_min(1e-12), torch.full_like(total, 0.5))
        return w_a, 1 - w_a

    def fuse(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        w_a, w_b = self.weights(a, b)
        if self.scales == "one":
            return (w_a * a + w_b * b).clamp(0.0, 1.0)
        base_a, base_b = mean_filter(a), mean_filter(b)
        fused = (base_a + base_b) / 2 + w_a * (a - base_a) + w_b * (b - base_b)
        return fused.clamp(0.0, 1.0)


def mean_filter(x: torch.Tensor, size: int = BASE_SIZE) -> torch.Tensor:
    """Mean over size x size windows, replicated borders (the base layer)."""
    r = size // 2
    return F.avg_pool2d(F.pad(x, (r, r, r, r), mode="replicate"), size, stride=1)


def zca(phi: torch.Tensor) -> torch.Tensor:
    """ZCA-whitened features of (N, C, h, w) ``phi`` (per image; the covariance over its positions)."""
    n, c, h, w = phi.shape
    x = phi.reshape(n, c, h * w).double()
    cov = x @ x.transpose(1, 2) / (h * w)
    values, vectors = torch.linalg.eigh(cov)
    values = values.clamp_min(0)
    eps = ZCA_EPS * values.mean(dim=1, keepdim=True) + 1e-10
    whiten = vectors @ torch.diag_embed((values + eps).rsqrt()) @ vectors.transpose(1, 2)
    return (whiten @ x).reshape(n, c, h, w).to(phi.dtype)


def upsampled_activity(phi: torch.Tensor, size) -> torch.Tensor:
    """l1-norm of the whitened features, block-averaged, bicubically upsampled to ``size`` (kept >= 0)."""
    activity = zca(phi).abs().sum(dim=1, keepdim=True)
    activity = mean_filter(activity, 2 * BLOCK_RADIUS + 1)
    return F.interpolate(activity, size=tuple(size), mode="bicubic", align_corners=False).clamp_min(0)


def load_model(device="cpu", weights_dir=None, scales: str = "one") -> ResNetAutoencoder:
    """The encoder with the shipped weights (sha256-checked, ``weights_only=True``), in eval mode on ``device``."""
    return with_shipped_weights(ResNetAutoencoder(scales), "resnetzca", device, weights_dir)


def build(device, *, scales: str = "one", weights_dir=None) -> FusionMethod:
    """Method factory (see registry.py)."""
    model = load_model(device, weights_dir, scales)
    return FusionMethod("resnetzca", model.fuse, model, device)
