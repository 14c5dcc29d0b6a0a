"""MFEnet's training (paper Eq. 3): the autoencoder loss, its batches and recipes; the network is in
MedFusionLib/methods/mfenet.py."""
from __future__ import annotations

import torch
from torch import nn

from MedFusionLib.methods.mfenet import ARCHITECTURE, MFEnet

from .training import Recipe, Trainable, image_gradients, reconstruction_psnr

ALPHA = 6.0  # weight of the gradient term of the loss (paper: alpha = 6)


def reconstruction_loss(output: torch.Tensor, target: torch.Tensor, alpha: float = ALPHA) -> torch.Tensor:
    """Paper Eq. 3 per image, averaged over the batch:
    L = (||Io - Ii||_F^2 + alpha ||grad Io - grad Ii||_F^2) / (W H), grad = forward differences in x and y
    (||grad||_F^2 sums the squares of both components).
    """
    n, _, h, w = target.shape
    gx_o, gy_o = image_gradients(output)
    gx_i, gy_i = image_gradients(target)
    pixel = (output - target).pow(2).sum()
    grad = (gx_o - gx_i).pow(2).sum() + (gy_o - gy_i).pow(2).sum()
    return (pixel + alpha * grad) / (n * h * w)


def _autoencoder_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    x = batch["image"]
    return reconstruction_loss(model(x), x)


def _single_image_batch(patches: torch.Tensor, rng) -> dict:
    """(B, 1, p, p) patches of single images (the sampler's "image" unit) -> the autoencoder's batch."""
    return {"image": patches}


def trainable():
    """How scripts/train.py trains MFEnet (see MedFusionTraining.training.Trainable)."""
    
    return Trainable(
        name="mfenet",
        architecture=ARCHITECTURE,
        unit="image",
        make_model=MFEnet,
        loss=_autoencoder_loss,
        make_batch=_single_image_batch,
        validate=reconstruction_psnr,
        loss_description="mean((Io-Ii)^2) + 6 * mean(|grad Io - grad Ii|^2), grad = forward differences "
                         "(paper Eq. 3, alpha = 6), summed over the image and divided by W*H",
        recipes={
            # 3000 steps of 16 random 64x64 crops = ~60 epochs of one crop per training image (794 images).
            # Measured on the 2-core AVX2 development CPU: 1.0-1.2 s/step when the cores are not shared
            # (~1 h), 6 validations on 8 pairs per folder (48 full images) of ~27 s each; lr as the paper.
            "cpu": Recipe(patch=64, batch_size=16, steps=3000, lr=1e-4, val_every=500, val_max_per_folder=8,
                          log_every=25, checkpoint_every=250),
            # The paper: full 256x256 images, batch 16, 60 epochs, Adam 1e-4 (meant for a GPU).
            "paper": Recipe(patch=None, batch_size=16, epochs=60, lr=1e-4, val_every_epochs=1,
                            val_max_per_folder=None, log_every=10, checkpoint_every=200),
            # A few seconds: used by the test suite's smoke run.
            "smoke": Recipe(patch=32, batch_size=4, steps=20, lr=1e-3, val_every=0, val_max_per_folder=1,
                            log_every=5, checkpoint_every=0),
        },
    )
