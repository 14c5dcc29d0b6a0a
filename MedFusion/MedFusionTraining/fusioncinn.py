"""FusionCINN's training: the fusion target, the paper's losses (Eqs. 16-19) plus a gradient term, validation and
recipes; the network is in MedFusionLib/methods/fusioncinn.py."""
from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from MedFusionLib.methods.fusioncinn import ARCHITECTURE, FusionCINN, absmax

from .training import Recipe, Trainable, image_gradients, pair_batch

TARGET_LEVELS = 4
# Loss weights, chosen by 300-step runs (64x64 crops, lr 1e-3, Q_AB/F folder mean on 4 validation pairs per
# folder): latent / NLL weights 0.1 / 1e-3 -> 0.653, 0 / 0 -> 0.662, 0.01 / 1e-4 -> 0.661; adding the gradient
# term (weight 6) -> 0.681 (with 0.1 / 1e-3) and 0.679 (with 0.01 / 1e-4); weight 15 -> 0.685, no better on
# 8 pairs per folder. So the paper's latent MSE and NLL stay, at weights where they do not cost quality.
W_GRADIENT = 6.0  # image-gradient MSE against the target's gradients
W_LATENT = 0.01  # inverse (latent) MSE
W_NLL = 1e-4  # negative log-likelihood per pixel
WEIGHT_DECAY = 1e-5  # the paper's (Adam)


def fusion_target(a: torch.Tensor, b: torch.Tensor, levels: int = TARGET_LEVELS) -> torch.Tensor:
    """The forward target: Laplacian pyramids of both sources, max-abs coefficient at EVERY level (details and
    base), collapsed, clamped to [0, 1].

    Why: there is no ground-truth fused image. Measured on the validation pairs (12 per folder, full
    256x256 images), the max-abs base beat the averaged base (methods/laplacian.py) on all of Q_AB/F
    (0.671 vs 0.657), SSIM (1.481 vs 1.462), VIFF (0.628 vs 0.574), MI (2.93 vs 2.53), SCD (1.45 vs 1.07),
    EN and SF: averaging the base halves bright CT bone and PET/SPECT uptake where the other source is dark.
    GFF scored a higher Q_AB/F (0.709) but lower SSIM / VIFF / SCD; plain max lost detail (SF 26.0).
    Reconstructing each source is no target at all: f^-1(f(x; c); c) = x holds by construction.
    """
    from MedFusionLib.methods.laplacian import collapse, laplacian_pyramid, max_levels

    levels = max(1, min(levels, max_levels(*a.shape[-2:])))
    pa, pb = laplacian_pyramid(a, levels), laplacian_pyramid(b, levels)
    return collapse([absmax(u, v) for u, v in zip(pa, pb)]).clamp(0.0, 1.0)


def fusion_losses(model: FusionCINN, a: torch.Tensor, b: torch.Tensor, target: torch.Tensor) -> dict:
    """The paper's three terms (Eqs. 16-19) and a gradient term, for a batch whose sides are multiples of 16:

    * image (forward) MSE:  mean((x_f - T)^2), x_f = f^-1(z_f; c_f) the fused output
    * gradient MSE:         mean((dx x_f - dx T)^2) + mean((dy x_f - dy T)^2), forward differences. Not in the
      paper: pixel MSE alone under-weights the fine edges the fusion is for (a blurred x_f costs little)
    * latent (inverse) MSE: sum((z_f - f(T; c_f))^2) / (H W), f(T; c_f) being the "ground-truth latent"
    * NLL: (0.5 |z|^2 - log|det J|) / (H W) for z_a|b and z_b|a (Gaussian prior on z, constants dropped)
    """
    n, _, h, w = a.shape
    c_f, z_ab, z_ba, z_t, logdet = model.analyse(a, b, target)
    z_f = model.fuse_latents(z_ab, z_ba)
    fused = model.flow.inverse(z_f, c_f)
    image = F.mse_loss(fused, target)
    gradient = sum(F.mse_loss(g, t) for g, t in zip(image_gradients(fused), image_gradients(target)))
    latent = sum((u - v).pow(2).sum() for u, v in zip(z_f, z_t)) / (n * h * w)
    sq = sum(torch.cat([u, v]).pow(2).flatten(1).sum(1) for u, v in zip(z_ab, z_ba))
    nll = (0.5 * sq - logdet[:2 * n]).mean() / (h * w)
    return {"image": image, "latent": latent, "nll": nll, "gradient": gradient}


def _loss(model: FusionCINN, batch: dict) -> torch.Tensor:
    terms = fusion_losses(model, batch["a"], batch["b"], batch["target"])
    return terms["image"] + W_GRADIENT * terms["gradient"] + W_LATENT * terms["latent"] + W_NLL * terms["nll"]


def _pair_batch(patches: torch.Tensor, rng) -> dict:
    """(B, 2, p, p) co-registered crops -> sources and the per-pixel fusion target."""
    batch = pair_batch(patches)
    return {**batch, "target": fusion_target(batch["a"], batch["b"])}


def validate_qabf(model: FusionCINN, items, device="cpu", batch_size: int = 8) -> dict:
    """Q_AB/F of the fused held-out pairs (full images): mean of the per-folder means (every modality pair
    weighs the same; PET-MRI has most pairs), also per folder."""
    from MedFusionLib.metrics import qabf

    model.eval()
    values = []
    with torch.inference_mode():
        for start in range(0, len(items), batch_size):
            pair = torch.from_numpy(items.images[start:start + batch_size]).to(device)
            fused = model.fuse(pair[:, :1], pair[:, 1:]).cpu().numpy()
            src = pair.cpu().numpy()
            values.extend(qabf(s[0], s[1], f[0], data_range=1.0) for s, f in zip(src, fused))
    groups = {}
    for value, meta in zip(values, items.meta):
        groups.setdefault(meta["folder"], []).append(value)
    by_source = {k: round(float(np.mean(v)), 4) for k, v in groups.items()}
    return {"metric": "qabf_folder_mean", "value": float(np.mean(list(by_source.values()))), "images": len(values),
            "by_source": by_source}


def trainable():
    """How scripts/train.py trains FusionCINN (see MedFusionTraining.training.Trainable)."""

    return Trainable(
        name="fusioncinn",
        architecture=ARCHITECTURE,
        unit="pair",
        make_model=FusionCINN,
        loss=_loss,
        make_batch=_pair_batch,
        validate=validate_qabf,
        loss_description=(f"mean((x_f - T)^2) + {W_GRADIENT} * [mean((dx x_f - dx T)^2) + mean((dy x_f - dy T)^2)] "
                          f"+ {W_LATENT} * sum((z_f - f(T; c_f))^2)/(HW) + {W_NLL} * (0.5 |z|^2 - log|det J|)/(HW) "
                          "over z_a|b, z_b|a; x_f = f^-1(z_f; c_f); T = Laplacian pyramids of both sources, "
                          "max-abs at every level (4 levels, base included)"),
        recipes={
            # Sized on the shared 2-core development CPU, run with --threads 1 beside another training: about
            # 1.6 s per step (128x128 crops, batch 8) -> 2200 steps in about an hour. (Two threads fighting
            # another job for the cores were 4x slower: use --threads 1 on a busy machine.)
            # lr: 1e-3 beat 2e-4 in 300-step runs; 5e-4 for the longer run without a schedule.
            "cpu": Recipe(patch=128, batch_size=8, steps=2200, lr=5e-4, weight_decay=WEIGHT_DECAY, val_every=440,
                          val_max_per_folder=8, log_every=25, checkpoint_every=220),
            # The paper: 128x128 inputs, batch 8, Adam lr 5e-5, weight decay 1e-5 (epochs not given: 100).
            "paper": Recipe(patch=128, batch_size=8, epochs=100, lr=5e-5, weight_decay=WEIGHT_DECAY,
                            val_every_epochs=5, val_max_per_folder=None, log_every=25, checkpoint_every=500),
            # A few seconds: used by the test suite's smoke run.
            "smoke": Recipe(patch=32, batch_size=2, steps=4, lr=1e-3, val_every=0, val_max_per_folder=1,
                            log_every=2, checkpoint_every=0),
        },
    )
