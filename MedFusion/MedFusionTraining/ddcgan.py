"""How scripts/train.py trains the DDcGAN-style generator (methods/ddcgan.py): two discriminators, LSGAN.

DDcGAN (Ma et al., IEEE TIP 2020) trains a generator G against two discriminators, D_a telling source A from the
fused image and D_b telling source B from it, so that F keeps what makes either source recognisable, plus a
content loss. Here:

    G loss  content(F; A, B) + W_ADV * sum_k mean((D_k(F) - 1)^2)                   (LSGAN, Mao et al. 2017)
    D loss  sum_k 0.5 * [mean((D_k(src_k) - 1)^2) + mean(D_k(F)^2)],  k in {a, b}, F detached

Stability, as the survey seed asks: least-squares objectives (gradients that do not vanish when D wins),
spectral norm on every discriminator convolution (D stays 1-Lipschitz, so it cannot overpower G), a small
adversarial weight (the content loss anchors G to the sources' structure) and patch outputs (a score per
receptive field, not one per crop). Every loss term is logged to the run folder's ``terms.csv``.

Where this departs from the paper, and why:

* One optimiser step updates G and both Ds at once (simultaneous gradient descent: D's parameters are frozen in
  G's adversarial term and F is detached in D's), because the shared training loop runs one Adam over one model;
  DDcGAN alternates G and D steps with a schedule that keeps their losses in balance.
* Content loss: intensity toward max(A, B) and gradient toward the stronger source (as MedFusion-Net,
  CDDFuse-style) instead of DDcGAN's Frobenius intensity term toward the infrared image and TV gradient term toward
  the visible one: MedFusion's sources are symmetric (either order, any two modalities).
* Discriminators: three stride-2 spectral-norm convolutions and a 1x1 patch head (DDcGAN: three convolutions and
  a fully connected layer with a tanh score), so any crop size trains.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from MedFusionLib.methods.ddcgan import ARCHITECTURE, DDcGANGenerator

from .training_parts import CONTENT_DESCRIPTION, WithTrainingParts, content_terms, frozen, trainable_with_parts

W_ADV = 0.02  # weight of the generator's adversarial term against the content loss
DISCRIMINATOR = (16, 32, 64)


class Discriminator(nn.Module):
    """Patch discriminator: stride-2 4x4 spectral-norm convolutions, LeakyReLU 0.2, a 1x1 score per patch."""

    def __init__(self, widths=DISCRIMINATOR):
        super().__init__()
        layers, c_in = [], 1
        for c_out in widths:
            layers += [spectral_norm(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            c_in = c_out
        layers.append(spectral_norm(nn.Conv2d(c_in, 1, 1)))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def make_model() -> WithTrainingParts:
    return WithTrainingParts(DDcGANGenerator(), d_a=Discriminator(), d_b=Discriminator())


def loss(model: WithTrainingParts, batch: dict) -> dict:
    a, b = batch["a"], batch["b"]
    fused = model(a, b)
    terms = content_terms(fused, a, b)
    discriminators = (model.parts["d_a"], model.parts["d_b"])
    g_adv = 0.0
    for d in discriminators:
        with frozen(d):  # G's adversarial term moves G only
            g_adv = g_adv + ((d(fused) - 1) ** 2).mean()
    d_loss, d_real, d_fake = 0.0, 0.0, 0.0
    for d, source in zip(discriminators, (a, b)):
        real, fake = d(source), d(fused.detach())  # D's term moves D only
        d_loss = d_loss + 0.5 * (((real - 1) ** 2).mean() + (fake ** 2).mean())
        d_real, d_fake = d_real + real.mean() / 2, d_fake + fake.mean() / 2
    total = terms["content"] + W_ADV * g_adv + d_loss
    return {"loss": total, "content": terms["content"].detach(), "intensity": terms["intensity"].detach(),
            "gradient": terms["gradient"].detach(), "g_adv": g_adv.detach(), "d_loss": d_loss.detach(),
            "d_real": d_real.detach(), "d_fake": d_fake.detach()}


def trainable():
    """The Trainable of the DDcGAN-style generator (see MedFusionTraining.training)."""
    from .training import Recipe

    return trainable_with_parts(
        "ddcgan", ARCHITECTURE, make_model, loss,
        loss_description=(f"G: {CONTENT_DESCRIPTION} + {W_ADV} * sum_k mean((D_k(F) - 1)^2); D (simultaneous step, F "
                          "detached): sum_k 0.5 * [mean((D_k(src_k) - 1)^2) + mean(D_k(F)^2)], k in {A, B}; "
                          "spectral-norm patch discriminators 1-16-32-64 (4x4 stride 2) + 1x1; F the raw output"),
        # One thread on the shared 2-core development CPU, within about 12 minutes (s/step in log.csv).
        cpu=Recipe(patch=64, batch_size=8, steps=4000, lr=1e-3, val_every=1000, val_max_per_folder=4,
                   log_every=25, checkpoint_every=200),
        # Seconds: the test suite's no-collapse run from scratch (Testing/test_family_networks.py).
        short=Recipe(patch=64, batch_size=4, steps=40, lr=2e-3, val_every=0, val_max_per_folder=1,
                     log_every=10, checkpoint_every=0))
