"""How scripts/train.py trains SwinFusion-S (methods/swinfusion.py): the paper's loss, batches, recipes.

SwinFusion's loss (Ma et al. 2022, Sec. III-C) for multi-modal fusion, with its weights:

    L = 10 L_ssim + 20 L_text + 20 L_int
    L_ssim = 0.5 (1 - SSIM(F, A)) + 0.5 (1 - SSIM(F, B))
    L_text = mean | |grad F| - max(|grad A|, |grad B|) |     grad: Sobel, |grad| = |Sx| + |Sy|
    L_int  = mean | F - max(A, B) |

Departure: the SSIM here is over 7x7 uniform windows (as the project's scorer), not 11x11 Gaussian ones, and the
Sobel kernels are used unnormalised (the paper's) by scaling MedFusion-Net's normalised ones by 8.
"""
from __future__ import annotations

import torch

from MedFusionLib.methods.medfusionnet import sobel
from MedFusionLib.methods.swinfusion import ARCHITECTURE, SwinFusionS

from .medfusionnet import pair_batch, ssim

LOSS_WEIGHTS = {"ssim": 10.0, "text": 20.0, "int": 20.0}
SOBEL_SCALE = 8.0  # methods' sobel() divides by 8; the paper's kernels do not


def texture(x: torch.Tensor) -> torch.Tensor:
    gx, gy = sobel(x)
    return SOBEL_SCALE * (gx.abs() + gy.abs())


def loss_terms(fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> dict:
    return {"ssim": 0.5 * (1 - ssim(fused, a)) + 0.5 * (1 - ssim(fused, b)),
            "text": (texture(fused) - torch.maximum(texture(a), texture(b))).abs().mean(),
            "int": (fused - torch.maximum(a, b)).abs().mean()}


def loss(model: SwinFusionS, batch: dict) -> torch.Tensor:
    terms = loss_terms(model(batch["a"], batch["b"]), batch["a"], batch["b"])
    return sum(LOSS_WEIGHTS[k] * terms[k] for k in LOSS_WEIGHTS)


def trainable():
    """The Trainable of SwinFusion-S (see MedFusionTraining.training)."""
    from .fusioncinn import validate_qabf
    from .training import Recipe, Trainable

    return Trainable(
        name="swinfusion",
        architecture=ARCHITECTURE,
        unit="pair",
        make_model=SwinFusionS,
        loss=loss,
        make_batch=pair_batch,
        validate=validate_qabf,
        loss_description=("10 * [0.5 (1 - SSIM(F,A)) + 0.5 (1 - SSIM(F,B))] + 20 * mean| |grad F| - max(|grad A|, "
                          "|grad B|) | + 20 * mean|F - max(A,B)|; grad = Sobel (unnormalised), |grad| = |Sx| + |Sy|, "
                          "SSIM over 7x7 uniform windows; F the raw output (SwinFusion, Ma et al. 2022)"),
        recipes={
            # One thread on the shared 2-core development CPU: about 0.3 s per step (96x96 crops, batch 8),
            # so about 10 minutes with the validations.
            "cpu": Recipe(patch=96, batch_size=8, steps=1500, lr=1e-3, val_every=500, val_max_per_folder=8,
                          log_every=25, checkpoint_every=100),
            # Full images, bigger batches and longer, for a GPU.
            "gpu": Recipe(patch=None, batch_size=16, steps=20000, lr=5e-4, val_every=1000, val_max_per_folder=None,
                          log_every=50, checkpoint_every=1000),
            # A few seconds: the test suite's smoke run.
            "smoke": Recipe(patch=32, batch_size=2, steps=4, lr=1e-3, val_every=0, val_max_per_folder=1,
                            log_every=2, checkpoint_every=0),
        },
    )

