"""ResNet-ZCA (deep-feature family): shipped encoder, ZCA whitening and l1-norm weights, fusion on held-out pairs,
any size, training smoke run.

Real code paths only: the shipped weights, the shared Harvard images (validation cases from data_split), the
real training machinery. Without the shared data these tests skip locally and FAIL in CI.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import harvard_pair
from training_checks import small_training_items, smoke_run_and_resume
from slice_batches import batch as _batch
from validation_checks import assert_beats_average_in_every_folder, assert_fuses_held_out_pairs
from weights_checks import assert_bad_weights_raise, assert_manifest_entry, refuse_network
from MedFusionLib.errors import InputError
from MedFusionLib.methods import REGISTRY, resnetzca
from MedFusionTraining import training
from MedFusionTraining.training import psnr



@pytest.fixture(scope="module")
def shipped():
    return REGISTRY.get("resnetzca").build("cpu")


# --------------------------------------------------------------------------------------------- weights
def test_registry_entry_and_options():
    info = REGISTRY.get("resnetzca")
    assert (info.family, info.kind, info.module) == ("deep-features", "network", "resnetzca")
    assert "zero-phase component analysis" in info.reference
    assert info.defaults() == {"scales": "one"}
    with pytest.raises(InputError, match="scales"):
        info.build("cpu", scales="three")
    assert resnetzca.count_parameters(resnetzca.ResNetAutoencoder().encoder) < 100_000


def test_shipped_weights_load_offline_and_match_the_manifest(monkeypatch, harvard_dir):
    assert_manifest_entry("resnetzca", resnetzca.ARCHITECTURE, resnetzca.count_parameters(resnetzca.ResNetAutoencoder()))
    refuse_network(monkeypatch, "ResNet-ZCA")
    model = resnetzca.load_model("cpu")
    assert not model.training
    x = _batch(*harvard_pair("CT-MRI", "41012.png"))  # a held-out CT and MRI
    training.seed_everything(0)
    untrained = resnetzca.ResNetAutoencoder().eval()
    with torch.no_grad():  # the encoder was trained: its autoencoder reconstructs held-out images
        shipped, fresh = psnr(model(x).clamp(0, 1), x), psnr(untrained(x).clamp(0, 1), x)
    assert float(shipped.min()) > 25 and bool((shipped > fresh + 10).all()), (shipped, fresh)


def test_corrupted_or_missing_weights_raise_weights_error(tmp_path):
    assert_bad_weights_raise(resnetzca.build, "resnetzca", tmp_path)


# ------------------------------------------------------------------------------------------ ZCA weights
def test_zca_whitens_the_real_features(harvard_dir):
    a, _ = harvard_pair("PET-MRI", "41066.png")
    with torch.no_grad():
        phi = resnetzca.load_model("cpu").features(_batch(a))
        white = resnetzca.zca(phi).double().flatten(2)[0]
    features = phi.double().flatten(2)[0]
    before = torch.linalg.eigvalsh(features @ features.T / features.shape[1]).clamp_min(0)
    after = torch.linalg.eigvalsh(white @ white.T / white.shape[1])
    eps = resnetzca.ZCA_EPS * before.mean() + 1e-10
    # whitening divides the variance along each principal direction by (its variance + eps): s / (s + eps)
    torch.testing.assert_close(after, before / (before + eps), atol=1e-4, rtol=0)
    assert float(after.max()) <= 1.0 + 1e-6 and float(after[-8:].min()) > 0.9  # strongest directions: unit variance
    assert float(before[-1] / before[-8]) > 2  # (which they were not before)


def test_weight_maps_sum_to_one_and_follow_the_sources(harvard_dir):
    a, b = harvard_pair("SPECT-MRI", "29015.png")
    x, y = _batch(a), _batch(b)
    model = resnetzca.load_model("cpu")
    with torch.no_grad():
        w_a, w_b = model.weights(x, y)
        swapped_b, swapped_a = model.weights(y, x)
        zeros = model.weights(torch.zeros_like(x), torch.zeros_like(x))[0]
    assert torch.allclose(w_a + w_b, torch.ones_like(w_a)) and 0 <= float(w_a.min()) and float(w_a.max()) <= 1
    torch.testing.assert_close(swapped_a, w_a, atol=1e-5, rtol=0)  # symmetric in the two sources
    assert float(w_a.std()) > 0.02  # not a constant mix
    assert torch.isfinite(zeros).all()


# ---------------------------------------------------------------------------------------------- fusion
def test_fuses_validation_pairs_deterministically_and_beats_average(harvard_dir, shipped):
    assert_fuses_held_out_pairs(shipped, harvard_dir, "CT-MRI")


def test_two_scale_variant_beats_average_too(harvard_dir):
    assert_beats_average_in_every_folder(REGISTRY.get("resnetzca").build("cpu", scales="two"), harvard_dir,
                                         per_folder=2)


def test_any_size_and_a_constant_input(harvard_dir, shipped):
    a, b = harvard_pair("PET-MRI", "41066.png")
    x, y = _batch(a[20:121, 30:105]), _batch(b[20:121, 30:105])  # 101 x 75: odd sizes at every stride
    fused = shipped(x, y)
    assert fused.shape == (1, 1, 101, 75) and torch.isfinite(fused).all()
    tiny = shipped(x[..., :3, :2], y[..., :3, :2])
    assert tiny.shape == (1, 1, 3, 2) and torch.isfinite(tiny).all()
    zeros = torch.zeros_like(x)
    assert float(shipped(zeros, zeros).abs().max()) == 0.0


# -------------------------------------------------------------------------------------------- training
def test_training_smoke_runs_validates_and_resumes_exactly(tmp_path, harvard_dir):
    trainable = training.get_trainable("resnetzca")
    assert trainable.unit == "image" and set(trainable.recipes) >= {"cpu", "gpu", "smoke"}
    items = small_training_items(harvard_dir)
    images = training.Items(items.images.reshape(-1, 1, *items.images.shape[-2:]),
                            [m for m in items.meta for _ in range(2)])  # both sources as single images
    summary, first = smoke_run_and_resume(trainable, images, tmp_path)
    assert summary["finished"] and summary["best"]["metric"] == "reconstruction_psnr_db"
    assert np.isfinite(summary["last_loss"])
    training.seed_everything(0)  # the smoke run's seed: the network it started from
    untrained = resnetzca.ResNetAutoencoder().state_dict()
    assert not torch.equal(first["out.weight"], untrained["out.weight"])  # it learnt
