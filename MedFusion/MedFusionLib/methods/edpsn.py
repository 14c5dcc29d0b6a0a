r"""EDPSN: entropy-aware dynamic path selection network (Qu, Huang, Shi, Liu & Tang, Information Fusion 123:
103312, 2025; seed paper 004). The modules (EEM, ED, MFB, AFM) and the choices behind them are documented in
``edpsn_modules.py``; this file holds the network, the method factory and the training objective.

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

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import InputError
from .edpsn_modules import AFM, eem_grey, entropy_masks, local_entropy

# Recorded in the weights manifest; change it whenever the layer layout or the fixed operators change.
ARCHITECTURE = ("edpsn-v1: EEM (CCG on b) + ED (3x3 entropy on 16 levels, 3-class Otsu on max(E_a, E_b')) + "
                "shallow conv 2->16 + DPS (AFM depth 1/2/3 of MFB dilations 1,2,3) + merge + head 16->1")
CHANNELS = 16
PATH_DEPTHS = (1, 2, 3)  # MFBs per path: low, medium, high entropy
GRAD_WEIGHT = 1.0
PERCEPTUAL_WEIGHT = 1.0


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


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _check_eem_weight(eem_weight) -> float:
    try:
        weight = float(eem_weight)
    except (TypeError, ValueError):
        raise InputError(f"EDPSN's eem_weight must be a number (0 switches edge enhancement off), not {eem_weight!r}.")
    if not math.isfinite(weight) or weight < 0:
        raise InputError(f"EDPSN's eem_weight must be a finite number >= 0 (0 switches edge enhancement off), "
                         f"not {eem_weight!r}.")
    return weight


def load_model(device="cpu", weights_dir=None, eem_weight: float = 1.0) -> EDPSN:
    """EDPSN with the shipped weights (sha256-checked, ``weights_only=True``), in eval mode on ``device``."""
    from ..weights_store import load_state_dict

    model = EDPSN(eem_weight=eem_weight)
    model.load_state_dict(load_state_dict("edpsn", device="cpu", weights_dir=weights_dir))
    return model.to(device, memory_format=torch.channels_last).eval()


def build(device, eem_weight: float = 1.0, *, weights_dir=None):
    """Method factory (see registry.py): fuse(a, b) for (N, 1, H, W) float32 batches in [0, 1]."""
    model = load_model(device, weights_dir, _check_eem_weight(eem_weight))

    def fuse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(a, b).clamp_(0.0, 1.0)

    fuse.model = model  # for inspection (tests, benchmarks); not part of the method contract
    return fuse


# ----------------------------------------------------------------------------------------------- training
_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def sobel(x: torch.Tensor):
    """(Sx, Sy) Sobel responses of (N, 1, H, W) images, replicated borders."""
    kernel = torch.stack([_SOBEL_X, _SOBEL_X.t()])[:, None].to(x)
    g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel)
    return g[:, :1], g[:, 1:]


def _max_abs(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.where(u.abs() >= v.abs(), u, v)


_PERCEPTUAL = {}


def perceptual_encoder(device) -> nn.Module:
    """The frozen MFEnet encoder (shipped weights), cached per device."""
    key = str(torch.device(device))
    if key not in _PERCEPTUAL:
        from .mfenet import load_model as load_mfenet

        encoder = load_mfenet(device).encoder.eval()
        for p in encoder.parameters():
            p.requires_grad_(False)
        _PERCEPTUAL[key] = encoder
    return _PERCEPTUAL[key]


def fusion_loss(fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor, encoder: nn.Module = None,
                grad_weight: float = GRAD_WEIGHT, perceptual_weight: float = PERCEPTUAL_WEIGHT):
    """The objective of the module docstring; returns (total, {"intensity", "gradient", "perceptual"})."""
    intensity = (fused - torch.maximum(a, b)).pow(2).mean()
    fx, fy = sobel(fused)
    ax, ay = sobel(a)
    bx, by = sobel(b)
    gradient = ((fx - _max_abs(ax, bx)).abs() + (fy - _max_abs(ay, by)).abs()).mean()
    total = intensity + grad_weight * gradient
    parts = {"intensity": intensity.detach(), "gradient": gradient.detach()}
    if encoder is not None and perceptual_weight:
        with torch.no_grad():
            target = torch.maximum(encoder(a), encoder(b))
        perceptual = (encoder(fused) - target).pow(2).mean()
        total = total + perceptual_weight * perceptual
        parts["perceptual"] = perceptual.detach()
    return total, parts


def _training_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    a, b = batch["a"], batch["b"]
    total, _ = fusion_loss(model(a, b), a, b, perceptual_encoder(a.device), GRAD_WEIGHT, PERCEPTUAL_WEIGHT)
    return total


def _pair_batch(patches: torch.Tensor, rng) -> dict:
    """(B, 2, p, p) co-registered crops (the sampler's "pair" unit: a then b) -> the loss's batch."""
    return {"a": patches[:, :1].contiguous(), "b": patches[:, 1:].contiguous()}


def fuse_items(model: nn.Module, images: np.ndarray, device="cpu", batch_size: int = 8) -> np.ndarray:
    """Fuse (M, 2, H, W) pairs with ``model`` in batches; (M, H, W) float32 in [0, 1]."""
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(images[start:start + batch_size]).to(device)
            out.append(model(x[:, :1], x[:, 1:]).clamp_(0.0, 1.0)[:, 0].cpu().numpy())
    return np.concatenate(out)


def fusion_validation(model: nn.Module, items, device="cpu") -> dict:
    """Mean Q_AB/F (higher is better) of the fused validation pairs, with VIFF and per-folder values."""
    from ..metrics import qabf, viff

    fused = fuse_items(model, items.images, device)
    rows = []
    for (a, b), f, meta in zip(items.images, fused, items.meta):
        rows.append((meta["folder"], qabf(a, b, f, data_range=1.0), viff(a, b, f, data_range=1.0)))
    by_source = {}
    for folder in dict.fromkeys(r[0] for r in rows):
        of = [r for r in rows if r[0] == folder]
        by_source[folder] = {"Q_ABF": round(float(np.mean([r[1] for r in of])), 4),
                             "VIFF": round(float(np.mean([r[2] for r in of])), 4)}
    return {"metric": "mean_Q_ABF", "value": float(np.mean([r[1] for r in rows])), "images": len(rows),
            "VIFF": round(float(np.mean([r[2] for r in rows])), 4), "by_source": by_source}


def trainable():
    """How scripts/train.py trains EDPSN (see MedFusionLib.training.Trainable)."""
    from ..errors import WeightsError
    from ..training import Recipe, Trainable
    from ..weights_store import manifest_entry

    try:  # provenance of the perceptual network, recorded in the EDPSN manifest entry
        phi = f"MFEnet weights sha256 {manifest_entry('mfenet')['sha256'][:16]}"
    except WeightsError:
        phi = "MFEnet weights not found"
    return Trainable(
        name="edpsn",
        architecture=ARCHITECTURE,
        unit="pair",
        make_model=EDPSN,
        loss=_training_loss,
        make_batch=_pair_batch,
        validate=fusion_validation,
        loss_description=(
            f"mean((F - max(A,B))^2) + {GRAD_WEIGHT} * mean(|SxF - maxabs(SxA,SxB)| + |SyF - maxabs(SyA,SyB)|) "
            f"+ {PERCEPTUAL_WEIGHT} * mean((phi(F) - max(phi(A),phi(B)))^2); S = Sobel, phi = frozen MFEnet "
            f"encoder C1-C6 trained by this project ({phi}; ImageNet VGG weights cannot be downloaded here); "
            f"A, B the original sources (before EEM)"),
        recipes={
            # Sized on the 2-core development CPU shared with another training run: 1 thread, about 0.95 s per
            # step (2/3 of it the perceptual MFEnet encoder) -> 3000 steps in about 50 min. lr 1e-3, not the
            # paper's 1e-4: measured after 150 steps the loss was 0.20 at 1e-3 and 0.69 at 1e-4, and 3000 steps
            # at 1e-4 would stop far from convergence.
            "cpu": Recipe(patch=64, batch_size=8, steps=3000, lr=1e-3, val_every=500, val_max_per_folder=8,
                          log_every=25, checkpoint_every=250),
            # The paper: Adam 1e-4, 100 epochs, full 256x256 images (meant for a GPU).
            "paper": Recipe(patch=None, batch_size=16, epochs=100, lr=1e-4, val_every_epochs=1,
                            val_max_per_folder=None, log_every=10, checkpoint_every=200),
            # A few seconds: used by the test suite's smoke run.
            "smoke": Recipe(patch=32, batch_size=2, steps=3, lr=1e-3, val_every=0, val_max_per_folder=1,
                            log_every=1, checkpoint_every=0),
        },
    )
