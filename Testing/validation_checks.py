"""What the networks' quality tests share: a few held-out pairs per modality folder, and the check that a method
beats pixel averaging on Q_AB/F and SF in every folder."""
from __future__ import annotations

import numpy as np
import torch

from MedFusionLib import data_split
from slice_batches import batch, spread_validation_pairs
from MedFusionLib.metrics import qabf, spatial_frequency


def validation_pairs(root, per_folder: int = 3):
    """A few held-out pairs per folder, spread over the case, end slices skipped."""
    return spread_validation_pairs(root, per_folder)


def read_batch(pairs):
    """(a, b): the pairs' sources as (N, 1, H, W) float32 tensors (PET/SPECT as luma)."""
    return (batch(*(data_split.read_y(p.path_a) for p in pairs)),
            batch(*(data_split.read_y(p.path_b) for p in pairs)))


def mean_scores(a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor):
    """(mean Q_AB/F, mean SF) over a batch of fused pairs."""
    q = [qabf(x[0], y[0], f[0], data_range=1.0) for x, y, f in zip(a.numpy(), b.numpy(), fused.numpy())]
    sf = [spatial_frequency(f[0], data_range=1.0) for f in fused.numpy()]
    return float(np.mean(q)), float(np.mean(sf))


def assert_beats_average_in_every_folder(fuse, root, per_folder: int = 3, margin_q: float = 0.05):
    """``fuse`` (a loaded method) scores above pixel averaging on Q_AB/F (by ``margin_q``) and on SF in each
    modality folder, on held-out pairs; returns {folder: (q, sf, q_average, sf_average)}."""
    scores = {}
    for folder, pairs in validation_pairs(root, per_folder).items():
        assert all(data_split.split_of(p.folder, p.case) == "val" for p in pairs)
        a, b = read_batch(pairs)
        q, sf = mean_scores(a, b, fuse(a, b))
        q_avg, sf_avg = mean_scores(a, b, (a + b) / 2)
        assert q > q_avg + margin_q, (folder, q, q_avg)
        assert sf > sf_avg, (folder, sf, sf_avg)
        scores[folder] = (q, sf, q_avg, sf_avg)
    return scores


def assert_fuses_held_out_pairs(fuse, root, folder: str) -> None:
    """``fuse`` on one held-out pair of ``folder``: deterministic, inputs untouched, float32 and finite; then it
    beats pixel averaging in every folder (assert_beats_average_in_every_folder)."""
    a, b = read_batch(validation_pairs(root, 1)[folder])
    a_copy, b_copy = a.clone(), b.clone()
    fused = fuse(a, b)
    assert torch.equal(fused, fuse(a, b))  # deterministic on the CPU
    assert torch.equal(a, a_copy) and torch.equal(b, b_copy)  # inputs untouched
    assert fused.dtype == torch.float32 and torch.isfinite(fused).all()
    assert_beats_average_in_every_folder(fuse, root)


def assert_any_size_and_constant_input(fuse, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``fuse`` keeps the size of an odd crop (x, y), of a 3 x 2 one, and stays finite on all-zero input;
    returns the crop's fused image."""
    fused = fuse(x, y)
    assert fused.shape == x.shape and torch.isfinite(fused).all()
    tiny = fuse(x[..., :3, :2], y[..., :3, :2])
    assert tiny.shape == (*x.shape[:2], 3, 2) and torch.isfinite(tiny).all()
    zeros = torch.zeros_like(x)
    assert torch.isfinite(fuse(zeros, zeros)).all()
    return fused


def assert_untrained_is_the_soft_max_rule(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A weight-mix network (methods/weight_mix.py) fresh from its constructor is the soft pixel-max rule."""
    from MedFusionLib.methods.weight_mix import T0

    with torch.no_grad():
        fused = model(x, y)
    weight = torch.sigmoid((x - y) / T0)
    assert torch.allclose(fused, weight * x + (1 - weight) * y, atol=1e-6)
    return fused
