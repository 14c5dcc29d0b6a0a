"""What every shipped network's factory does: load the verified weights, and wrap the model as a fuse function."""
from __future__ import annotations

import torch
from torch import nn


def load_trained(model: nn.Module, method: str, device="cpu", weights_dir=None) -> nn.Module:
    """``model`` with the shipped weights of ``method`` (sha256-checked, ``weights_only=True``), in eval mode."""
    from ..weights_store import load_state_dict

    model.load_state_dict(load_state_dict(method, device="cpu", weights_dir=weights_dir))
    return model.to(device).eval()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def fuse_function(model: nn.Module):
    """The registry contract's fuse(a, b) over ``model.fuse``, without autograd."""

    def fuse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model.fuse(a, b)

    fuse.model = model  # for inspection (tests, benchmarks); not part of the method contract
    return fuse
