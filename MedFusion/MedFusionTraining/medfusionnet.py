"""How scripts/train.py trains MedFusion-Net (methods/medfusionnet.py): loss, batches, validation, recipes.

There is no ground-truth fused image, so the loss is built from what the CDDFuse-protocol metrics reward:

* intensity   |F - max(A, B)|                       pixel-max scores highest on SD, MI, VIF among hand rules
* gradient    |S F - S_strong|, x and y             S_strong = the Sobel vector of the source whose gradient is
                                                    stronger at that pixel (Q_AB/F and SF reward keeping it)
* structure   2 - SSIM(F, A) - SSIM(F, B)            7x7 uniform windows, as the scorer's SSIM (weight 0: it cost MI)
* scd         2 - corr(F - B, A) - corr(F - A, B)   the SCD metric itself (the gradient term costs SCD)
* contrast    relu(1.03 std(max(A, B)) - std(F))    per crop, toward a little more SD than pixel-max (weight 0: no gain)

The weights of the terms were chosen by short runs (reports/flagship/README.md). A modality pair can have its
own weights and intensity target (PAIR_LOSS_WEIGHTS, keyed by the training pair's folder): CT-MRI is pulled
harder toward a brighter max (``gain`` x max(A, B)), which on CT-MRI scores higher MI, SD and SCD than the
gradient-led loss the PET/SPECT pairs want. The network itself gets no modality flag (see its FiLM context).
"""
from __future__ import annotations

from typing import Dict

import torch
from torch.nn import functional as F

from MedFusionLib.methods.medfusionnet import ARCHITECTURE, T0, MedFusionNet, sobel

from .training import pair_batch as training_pair_batch

LOSS_WEIGHTS: Dict[str, float] = {"intensity": 1.0, "gradient": 8.0, "structure": 0.0, "scd": 0.05, "contrast": 0.0,
                                  "gain": 1.0, "soft": 0.0}
# Overrides of LOSS_WEIGHTS per training folder. The intensity target is min(1, gain x M), M = max(A, B), or
# with soft = 1 the soft max w A + (1 - w) B, w = sigmoid((A - B) / T0) (on CT-MRI it keeps more MI than max).
PAIR_LOSS_WEIGHTS: Dict[str, Dict[str, float]] = {"CT-MRI": {"intensity": 4.0, "gradient": 4.0, "gain": 1.05,
                                                             "soft": 1.0},
                                                  "PET-MRI": {"structure": 0.25}}
TERMS = ("intensity", "gradient", "structure", "scd", "contrast")
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


def intensity_target(a: torch.Tensor, b: torch.Tensor, gain: float = 1.0, soft: bool = False) -> torch.Tensor:
    if soft:
        w = torch.sigmoid((a - b) / T0)
        brightest = w * a + (1 - w) * b
    else:
        brightest = torch.maximum(a, b)
    return (gain * brightest).clamp(max=1.0)


def loss_terms(fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor, gain: float = 1.0,
               soft: bool = False) -> Dict[str, torch.Tensor]:
    (fx, fy), (ax, ay), (bx, by) = sobel(fused), sobel(a), sobel(b)
    a_stronger = (ax * ax + ay * ay) >= (bx * bx + by * by)
    tx, ty = torch.where(a_stronger, ax, bx), torch.where(a_stronger, ay, by)
    return {"intensity": (fused - intensity_target(a, b, gain, soft)).abs().mean(),
            "gradient": (fx - tx).abs().mean() + (fy - ty).abs().mean(),
            "structure": 2.0 - ssim(fused, a) - ssim(fused, b),
            "scd": 2.0 - (_correlation(fused - b, a) + _correlation(fused - a, b)).mean(),
            "contrast": F.relu(CONTRAST_MARGIN * torch.maximum(a, b).flatten(1).std(1) - fused.flatten(1).std(1)).mean()}


def _weighted(terms: Dict[str, torch.Tensor], weights: Dict[str, float]) -> torch.Tensor:
    return sum(weights[k] * terms[k] for k in TERMS if weights[k])


def make_loss(weights: Dict[str, float], pair_weights: Dict[str, Dict[str, float]]):
    """The loss of a batch: each folder's crops with that folder's weights, averaged by crop count."""
    def loss(model: MedFusionNet, batch: dict) -> torch.Tensor:
        a, b = batch["a"], batch["b"]
        fused = model(a, b)
        folders = batch.get("folders") or [None] * len(a)
        total = 0.0
        for folder in sorted(set(folders), key=str):
            w = dict(weights, **pair_weights.get(folder, {}))
            idx = torch.tensor([i for i, f in enumerate(folders) if f == folder], device=a.device)
            terms = loss_terms(fused[idx], a[idx], b[idx], gain=w["gain"], soft=bool(w["soft"]))
            total = total + _weighted(terms, w) * (len(idx) / len(a))
        return total

    return loss


def describe(weights: Dict[str, float], pair_weights: Dict[str, Dict[str, float]] = None) -> str:
    per_pair = "; ".join(f"{folder} crops: {overrides}" for folder, overrides in (pair_weights or {}).items())
    return (f"{weights['intensity']} * mean|F - min(1, {weights['gain']} M)| (M = max(A,B), or the soft max "
            f"sigmoid((A-B)/{T0}) A + (1 - sigmoid) B if soft={weights['soft']} is 1) "
            f"+ {weights['gradient']} * mean(|SxF - Tx| + |SyF - Ty|) "
            f"+ {weights['structure']} * (2 - SSIM(F,A) - SSIM(F,B)) + {weights['scd']} * (2 - corr(F-B,A) - corr(F-A,B)) "
            f"+ {weights['contrast']} * relu({CONTRAST_MARGIN} std(max(A,B)) - std(F)) per crop; "
            "S = Sobel/8, T = the Sobel vector of the "
            "source with the stronger gradient at each pixel, SSIM over 7x7 uniform windows; F the raw output"
            + (f"; overrides for {per_pair}" if per_pair else ""))


def pair_batch(patches: torch.Tensor, rng, meta=None) -> dict:
    """training.pair_batch, plus each crop's folder (modality pair) for the per-pair loss weights."""
    batch = training_pair_batch(patches)
    if meta is not None:
        batch["folders"] = [m["folder"] for m in meta]
    return batch


def trainable(weights: Dict[str, float] = None, pair_weights: Dict[str, Dict[str, float]] = None):
    """The Trainable of MedFusion-Net (see MedFusionLib.training); ``weights`` overrides LOSS_WEIGHTS and
    ``pair_weights`` replaces PAIR_LOSS_WEIGHTS."""
    from .fusioncinn import validate_qabf
    from .training import Recipe, Trainable

    weights = dict(LOSS_WEIGHTS, **(weights or {}))
    pair_weights = PAIR_LOSS_WEIGHTS if pair_weights is None else pair_weights
    return Trainable(
        name="medfusionnet",
        architecture=ARCHITECTURE,
        unit="pair",
        make_model=MedFusionNet,
        loss=make_loss(weights, pair_weights),
        make_batch=pair_batch,
        batch_meta=True,
        validate=validate_qabf,
        loss_description=describe(weights, pair_weights),
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
