"""How scripts/train.py trains the U-Net fusion network (methods/unetfusion.py) the FW-Net way.

FW-Net (Fan et al., arXiv:1906.00225, 2019) puts two U-Nets in a W: U1 fuses (A, B) into F, U2 reconstructs
(A, B) from F alone, and the reconstruction error is part of the loss, so that F cannot drop what either source
shows. Here:

    loss  content(F; A, B) + W_RECONSTRUCTION * mean|U2(F) - (A, B)|

U2 is a U-Net of the same shape (1 -> 2 channels), a training-only part: only U1 ships.

Where this departs from the paper, and why: FW-Net's loss on the fused image itself is replaced by MedFusion's
content terms (intensity toward max(A, B), gradient toward the stronger source; as MedFusion-Net), which the
benchmark metrics reward and which treat the two sources symmetrically; the U-Nets are small (see
methods/unetfusion.py); one Adam step trains U1 and U2 together (as in FW-Net, end to end).
"""
from __future__ import annotations

import torch

from MedFusionLib.methods.unetfusion import ARCHITECTURE, UNet, UNetFusion

from .training_parts import CONTENT_DESCRIPTION, WithTrainingParts, content_terms, trainable_with_parts

W_RECONSTRUCTION = 0.5


def make_model() -> WithTrainingParts:
    return WithTrainingParts(UNetFusion(), reconstruct=UNet(1, 2))


def loss(model: WithTrainingParts, batch: dict) -> dict:
    a, b = batch["a"], batch["b"]
    fused = model(a, b)
    terms = content_terms(fused, a, b)
    reconstruction = (model.parts["reconstruct"](fused) - torch.cat([a, b], dim=1)).abs().mean()
    total = terms["content"] + W_RECONSTRUCTION * reconstruction
    return {"loss": total, "content": terms["content"].detach(), "intensity": terms["intensity"].detach(),
            "gradient": terms["gradient"].detach(), "reconstruction": reconstruction.detach()}


def trainable():
    """The Trainable of the U-Net fusion network (see MedFusionTraining.training)."""
    from .training import Recipe

    return trainable_with_parts(
        "unetfusion", ARCHITECTURE, make_model, loss,
        loss_description=(f"{CONTENT_DESCRIPTION} + {W_RECONSTRUCTION} * mean|U2(F) - (A, B)|, U2 a training-only "
                          "U-Net (16-32-64, 1 -> 2 channels) reconstructing both sources from the raw output F"),
        # One thread on the shared 2-core development CPU, within about 12 minutes (s/step in log.csv).
        cpu=Recipe(patch=64, batch_size=8, steps=2400, lr=1e-3, val_every=600, val_max_per_folder=4,
                   log_every=25, checkpoint_every=200))
