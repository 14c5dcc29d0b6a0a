"""How scripts/train.py trains MedFusion-Net (methods/medfusionnet.py): loss, batches, validation, recipes.

There is no ground-truth fused image, so the loss is built from what the CDDFuse-protocol metrics reward:

* intensity   |F - max(A, B)|                       pixel-max scores highest on SD, MI, VIF among hand rules
* gradient    |S F - S_strong|, x and y             S_strong = the Sobel vector of the source whose gradient is
                                                    stronger at that pixel (Q_AB/F and SF reward keeping it)
* structure   2 - SSIM(F, A) - SSIM(F, B)            7x7 uniform windows, as the scorer's SSIM (weight 0: it cost MI)
* scd         2 - corr(F - B, A) - corr(F - A, B)   the SCD metric itself (the gradient term costs SCD)
* contrast    relu(1.03 std(max(A, B)) - std(F))    per crop, toward a little more SD than pixel-max (weight 0: no gain)

The weights of the terms were chosen by short runs (reports/flagship/README.md).
"""
from __future__ import annotations

from typing import Dict

import torch
from torch.nn import functional as F

from MedFusionLib.methods.medfusionnet import ARCHITECTURE, MedFusionNet, sobel

LOSS_WEIGHTS: Dict[str, float] = {"intensity": 1.0, "gradient": 8.0, "structure": 0.0, "scd": 0.05, "contrast": 0.0}
CONTRAST_MARGIN = 1.03  # the contrast term asks for a standard deviation 3% above pixel-max's
SSIM_WINDOW = 7
SSIM_C1, SSIM_C2 = 0.01 ** 2, 0.03 ** 2  # data range 1


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of (N, 1, H, W) images in [0, 1] over 7x7 uniform windows ('valid' positions)."""
    mean = lambda t: F.avg_pool2d(t, SSIM_WINDOW, stride=1)  # noqa: E731
    ux, uy = mean(x), mean(y)
    vx, vy, vxy = mean(x * x) - ux * ux, mean(y * y) - uy * uy, mean(x * y) - ux * uy
    s = (2 * ux * uy + SSIM_C1) * (2 * vxy + SSIM_C2) / ((ux * ux + uy * uy + SSIM_C1) * (vx + vy + SSIM_C2))
    return s.mean()


def _correlation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image Pearson correlation of (N, 1, H, W) batches, (N,)."""
    x, y = x.flatten(1), y.flatten(1)
    x, y = x - x.mean(1, keepdim=True), y - y.mean(1, keepdim=True)
    return (x * y).sum(1) / torch.sqrt((x * x).sum(1) * (y * y).sum(1) + 1e-12)


def loss_terms(fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> Dict[str, torch.Tensor]:
    (fx, fy), (ax, ay), (bx, by) = sobel(fused), sobel(a), sobel(b)
    a_stronger = (ax * ax + ay * ay) >= (bx * bx + by * by)
    tx, ty = torch.where(a_stronger, ax, bx), torch.where(a_stronger, ay, by)
    return {"intensity": (fused - torch.maximum(a, b)).abs().mean(),
            "gradient": (fx - tx).abs().mean() + (fy - ty).abs().mean(),
            "structure": 2.0 - ssim(fused, a) - ssim(fused, b),
            "scd": 2.0 - (_correlation(fused - b, a) + _correlation(fused - a, b)).mean(),
            "contrast": F.relu(CONTRAST_MARGIN * torch.maximum(a, b).flatten(1).std(1) - fused.flatten(1).std(1)).mean()}


def make_loss(weights: Dict[str, float]):
    def loss(model: MedFusionNet, batch: dict) -> torch.Tensor:
        terms = loss_terms(model(batch["a"], batch["b"]), batch["a"], batch["b"])
        return sum(weights[k] * terms[k] for k in weights if weights[k])

    return loss


def describe(weights: Dict[str, float]) -> str:
    return (f"{weights['intensity']} * mean|F - max(A,B)| + {weights['gradient']} * mean(|SxF - Tx| + |SyF - Ty|) "
            f"+ {weights['structure']} * (2 - SSIM(F,A) - SSIM(F,B)) + {weights['scd']} * (2 - corr(F-B,A) - corr(F-A,B)) "
            f"+ {weights['contrast']} * relu({CONTRAST_MARGIN} std(max(A,B)) - std(F)) per crop; "
            "S = Sobel/8, T = the Sobel vector of the "
            "source with the stronger gradient at each pixel, SSIM over 7x7 uniform windows; F the raw output")


def pair_batch(patches: torch.Tensor, rng) -> dict:
    return {"a": patches[:, :1].contiguous(), "b": patches[:, 1:].contiguous()}


def trainable(weights: Dict[str, float] = None):
    """The Trainable of MedFusion-Net (see MedFusionLib.training); ``weights`` overrides LOSS_WEIGHTS."""
    from .fusioncinn import validate_qabf
    from .training import Recipe, Trainable

    weights = dict(LOSS_WEIGHTS, **(weights or {}))
    return Trainable(
        name="medfusionnet",
        architecture=ARCHITECTURE,
        unit="pair",
        make_model=MedFusionNet,
        loss=make_loss(weights),
        make_batch=pair_batch,
        validate=validate_qabf,
        loss_description=describe(weights),
        recipes={
            # One thread on the shared 2-core development CPU (see reports/flagship/README.md for s/step).
            "cpu": Recipe(patch=128, batch_size=8, steps=6000, lr=1e-3, val_every=1000, val_max_per_folder=8,
                          log_every=25, checkpoint_every=250),
            # Full images, bigger batches and longer, for a GPU.
            "gpu": Recipe(patch=None, batch_size=32, steps=20000, lr=1e-3, val_every=1000, val_max_per_folder=None,
                          log_every=50, checkpoint_every=1000),
            # A few seconds: the test suite's smoke run.
            "smoke": Recipe(patch=32, batch_size=2, steps=4, lr=1e-3, val_every=0, val_max_per_folder=1,
                            log_every=2, checkpoint_every=0),
        },
    )
