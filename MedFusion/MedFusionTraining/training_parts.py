"""What the training of a network with training-only parts shares (a GAN's discriminators, FW-Net's
reconstruction U-Net): one module holding the shipped network and those parts, and the content loss.

The shared loop (training.py) trains one ``nn.Module`` with one Adam optimiser; ``WithTrainingParts`` is that
module, ``fuse`` is the shipped network's (what validation scores), and ``shipped_state`` keeps only the shipped
network's weights for export.
"""
from __future__ import annotations

from typing import Callable, Dict

import torch
from torch import nn

from .medfusionnet import loss_terms

# The content terms of MedFusion-Net's loss (MedFusionTraining/medfusionnet.py) these networks use: intensity
# toward max(A, B), Sobel gradient toward the stronger source's (weights as MedFusion-Net's).
CONTENT_WEIGHTS: Dict[str, float] = {"intensity": 1.0, "gradient": 8.0}
CONTENT_DESCRIPTION = ("content = 1.0 * mean|F - max(A,B)| + 8.0 * mean(|SxF - Tx| + |SyF - Ty|), S = Sobel/8, "
                       "T = the Sobel vector of the source with the stronger gradient at each pixel")
SHIPPED = "net"


def content_terms(fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> Dict[str, torch.Tensor]:
    """{"content": weighted sum, and each weighted term} of the raw fused image against the sources."""
    terms = loss_terms(fused, a, b)
    out = {key: weight * terms[key] for key, weight in CONTENT_WEIGHTS.items()}
    out["content"] = sum(out.values())
    return out


class WithTrainingParts(nn.Module):
    """The shipped network ``net`` beside its training-only ``parts`` (a ModuleDict)."""

    def __init__(self, net: nn.Module, **parts: nn.Module):
        super().__init__()
        self.net = net
        self.parts = nn.ModuleDict(parts)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.net(a, b)

    def fuse(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.net.fuse(a, b)


def shipped_state(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The state dict of ``net`` alone (keys without the ``net.`` prefix), from a WithTrainingParts state dict."""
    prefix = SHIPPED + "."
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


class frozen:
    """Context: ``module``'s parameters take no gradient (a GAN's generator step through its discriminator)."""

    def __init__(self, module: nn.Module):
        self.params = [p for p in module.parameters() if p.requires_grad]

    def __enter__(self):
        for p in self.params:
            p.requires_grad_(False)

    def __exit__(self, *exc):
        for p in self.params:
            p.requires_grad_(True)


def trainable_with_parts(name: str, architecture: str, make_model: Callable[[], WithTrainingParts], loss: Callable,
                         loss_description: str, cpu: "Recipe", **more: "Recipe") -> "Trainable":
    """The Trainable of a network trained beside training-only parts (pairs, Q_AB/F validation, ``net`` shipped):
    its ``cpu`` recipe, the shared ``gpu`` and ``smoke`` ones, and any ``more``."""
    from .fusioncinn import validate_qabf
    from .training import Recipe, Trainable, pair_batch

    recipes = {
        "cpu": cpu,
        # Full images, bigger batches and longer, for a GPU.
        "gpu": Recipe(patch=None, batch_size=32, steps=20000, lr=5e-4, val_every=1000, val_max_per_folder=None,
                      log_every=50, checkpoint_every=1000),
        # A few seconds: the test suite's smoke run.
        "smoke": Recipe(patch=32, batch_size=2, steps=4, lr=1e-3, val_every=0, val_max_per_folder=1,
                        log_every=2, checkpoint_every=0),
        **more,
    }
    return Trainable(name=name, architecture=architecture, unit="pair", make_model=make_model, loss=loss,
                     make_batch=pair_batch, validate=validate_qabf, shipped=shipped_state,
                     loss_description=loss_description, recipes=recipes)
