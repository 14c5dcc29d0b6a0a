"""How scripts/train.py trains ResNet-ZCA's encoder (methods/resnetzca.py): an autoencoder on single images.

ImageNet ResNet50 weights cannot be downloaded here, so the encoder is learnt as the encoder of an autoencoder
on every source image of the training cases (unit "image"), with DenseFuse's loss (Li & Wu, 'DenseFuse: a
fusion approach to infrared and visible images', IEEE TIP 28(5), 2019, from the same group as ResNet-ZCA):

    L = mean((O - I)^2) + LAMBDA (1 - SSIM(O, I))          LAMBDA = 10, SSIM over 7x7 uniform windows

Validation: the reconstruction PSNR (the encoder's only training signal); the fusion rule itself has no
parameters.
"""
from __future__ import annotations

import torch

from MedFusionLib.methods.resnetzca import ARCHITECTURE, ResNetAutoencoder

from .medfusionnet import ssim

LAMBDA = 10.0


def loss(model: ResNetAutoencoder, batch: dict) -> torch.Tensor:
    x = batch["x"]
    out = model(x)
    return (out - x).pow(2).mean() + LAMBDA * (1 - ssim(out, x))


def image_batch(patches: torch.Tensor, rng) -> dict:
    return {"x": patches}


def trainable():
    """The Trainable of ResNet-ZCA's encoder (see MedFusionTraining.training)."""
    from .training import Recipe, Trainable, reconstruction_psnr

    return Trainable(
        name="resnetzca",
        architecture=ARCHITECTURE,
        unit="image",
        make_model=ResNetAutoencoder,
        loss=loss,
        make_batch=image_batch,
        validate=reconstruction_psnr,
        loss_description=(f"mean((O - I)^2) + {LAMBDA} * (1 - SSIM(O, I)), SSIM over 7x7 uniform windows "
                          "(DenseFuse's autoencoder loss); O = decoder(encoder(I)) on single source images"),
        recipes={
            # One thread on the shared 2-core development CPU: about 0.2 s per step (64x64 crops, batch 16)
            # beside another training, so about 10 minutes with the validations. (800 steps of batch 8, 80 s,
            # reconstructed the held-out images at only 30.8 dB.)
            "cpu": Recipe(patch=64, batch_size=16, steps=2500, lr=1e-3, val_every=625, val_max_per_folder=8,
                          log_every=25, checkpoint_every=125),
            # Full images, bigger batches and longer, for a GPU.
            "gpu": Recipe(patch=None, batch_size=32, steps=20000, lr=5e-4, val_every=1000, val_max_per_folder=None,
                          log_every=50, checkpoint_every=1000),
            # A few seconds: the test suite's smoke run.
            "smoke": Recipe(patch=32, batch_size=2, steps=4, lr=1e-3, val_every=0, val_max_per_folder=1,
                            log_every=2, checkpoint_every=0),
        },
    )

