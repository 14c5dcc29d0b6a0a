"""EDPSN's training objective (see MedFusionLib/methods/edpsn.py's docstring), batches, validation and recipes."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from MedFusionLib.methods.edpsn import ARCHITECTURE, EDPSN

from .training import Recipe, Trainable, pair_batch

GRAD_WEIGHT = 1.0
PERCEPTUAL_WEIGHT = 1.0
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
        from MedFusionLib.methods.mfenet import load_model as load_mfenet

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
    from MedFusionLib.metrics import qabf, viff

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
    """How scripts/train.py trains EDPSN (see MedFusionTraining.training.Trainable)."""
    from MedFusionLib.errors import WeightsError
    from MedFusionLib.weights_store import manifest_entry

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
        make_batch=pair_batch,
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
