"""The survey-family networks of issue 18 this branch adds: DDcGAN (GAN) and the FW-Net U-Net (U-Net).

For each: the registry entry and its stated cost, the shipped weights (offline, sha256, the shipped network
alone: no discriminator, no reconstruction U-Net), fusion of real held-out pairs of every modality pair
(deterministic, finite, inputs untouched, better than pixel averaging on Q_AB/F and SF), and a training smoke
run through the shared machinery (resumes bit-exactly, logs its loss terms). For the GAN: a short adversarial
run from scratch does not collapse. Without the shared data these tests skip locally and FAIL in CI.
"""
from __future__ import annotations

import csv
import socket

import numpy as np
import pytest
import torch

from slice_batches import batch as _batch, spread_validation_pairs
from training_checks import small_training_items, smoke_run_and_resume
from weights_checks import assert_bad_weights_raise
from MedFusionLib import data_split, weights_store
from MedFusionLib.methods import REGISTRY, ddcgan, unetfusion
from MedFusionLib.metrics import qabf
from MedFusionLib.metrics.gradient import spatial_frequency
from MedFusionTraining import training

# registry name -> (inference module, shipped network class, family)
NETWORKS = {"ddcgan": (ddcgan, ddcgan.DDcGANGenerator, "gan"),
            "unetfusion": (unetfusion, unetfusion.UNetFusion, "unet")}
TERMS = {"ddcgan": {"content", "intensity", "gradient", "g_adv", "d_loss", "d_real", "d_fake"},
         "unetfusion": {"content", "intensity", "gradient", "reconstruction"}}


@pytest.fixture(scope="module")
def held_out(harvard_dir):
    """folder -> (A, B) batches of 3 held-out pairs (full 256 x 256 slices)."""
    batches = {}
    for folder, pairs in spread_validation_pairs(harvard_dir, per_folder=3).items():
        assert all(data_split.split_of(p.folder, p.case) == "val" for p in pairs)
        batches[folder] = (_batch(*(data_split.read_y(p.path_a) for p in pairs)),
                           _batch(*(data_split.read_y(p.path_b) for p in pairs)))
    return batches


def _mean_scores(a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor):
    triples = list(zip(a.numpy()[:, 0], b.numpy()[:, 0], fused.numpy()[:, 0]))
    return (float(np.mean([qabf(x, y, f, data_range=1.0) for x, y, f in triples])),
            float(np.mean([spatial_frequency(f, data_range=1.0) for _, _, f in triples])))


# --------------------------------------------------------------------------------------------- entries
@pytest.mark.parametrize("name", NETWORKS)
def test_registry_entry_family_and_stated_cost(name):
    from torch.utils.flop_counter import FlopCounterMode

    module, network, family = NETWORKS[name]
    info = REGISTRY.get(name)
    assert (info.kind, info.module, info.family) == ("network", name, family)
    model = network().eval()
    assert module.count_parameters(model) < 200_000  # CPU-sized
    with FlopCounterMode(display=False) as counter:
        model.fuse(torch.rand(1, 1, 128, 128), torch.rand(1, 1, 128, 128))
    stated = module.flops_per_pixel() * 128 * 128
    assert abs(counter.get_total_flops() - stated) < 0.05 * stated  # the stated cost is the real one
    assert stated * 4 < 5e9  # under 5 GFLOPs per 256 x 256 slice


@pytest.mark.parametrize("name", NETWORKS)
def test_shipped_weights_are_the_network_alone_offline_and_checked(name, monkeypatch):
    module, network, _ = NETWORKS[name]
    entry = weights_store.manifest_entry(name)
    assert entry["sha256"] == weights_store.sha256_file(weights_store.weights_path(name))
    assert entry["architecture"] == module.ARCHITECTURE
    assert entry["parameters"] == module.count_parameters(network())  # no discriminator, no reconstruction net
    assert entry["data"]["validation_cases"] == {k: list(v) for k, v in data_split.VALIDATION_CASES.items()}
    assert entry["recipe"]["command"] and entry["recipe"]["seed"] == 0 and entry["recipe"]["name"] == "cpu"
    shipped = weights_store.load_state_dict(name)
    assert set(shipped) == set(network().state_dict())

    def no_network(*args, **kwargs):
        raise AssertionError(f"{name} tried to open a network connection")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    method = REGISTRY.get(name).build("cpu")
    assert not method.model.training
    torch.manual_seed(0)
    untrained = network().state_dict()
    assert any(not torch.equal(v, untrained[k]) for k, v in method.model.state_dict().items())  # it was trained


@pytest.mark.parametrize("name", NETWORKS)
def test_corrupted_or_missing_weights_raise_weights_error(name, tmp_path):
    assert_bad_weights_raise(NETWORKS[name][0].build, name, tmp_path)


# ---------------------------------------------------------------------------------------------- fusion
@pytest.mark.parametrize("name", NETWORKS)
def test_beats_average_on_qabf_and_sf_for_every_modality_pair(name, held_out):
    method = REGISTRY.get(name).build("cpu")
    for folder, (a, b) in held_out.items():
        a_copy, b_copy = a.clone(), b.clone()
        fused = method(a, b)
        assert torch.equal(fused, method(a, b))  # deterministic on the CPU
        assert torch.equal(a, a_copy) and torch.equal(b, b_copy)  # inputs untouched
        assert fused.shape == a.shape and torch.isfinite(fused).all()
        assert 0 <= float(fused.min()) and float(fused.max()) <= 1
        q_net, sf_net = _mean_scores(a, b, fused)
        q_avg, sf_avg = _mean_scores(a, b, (a + b) / 2)
        assert q_net > q_avg and sf_net > sf_avg, (folder, q_net, q_avg, sf_net, sf_avg)


@pytest.mark.parametrize("name", NETWORKS)
def test_tiny_and_constant_inputs(name, held_out):
    method = REGISTRY.get(name).build("cpu")
    a, b = held_out["PET-MRI"]
    tiny = method(a[:1, :, 100:103, 90:92], b[:1, :, 100:103, 90:92])
    assert tiny.shape == (1, 1, 3, 2) and torch.isfinite(tiny).all()
    zeros = torch.zeros_like(a[:1])
    assert torch.isfinite(method(zeros, zeros)).all()


def test_gan_generator_is_local_within_its_declared_margin(held_out):
    """crop_margin (registry) lets the engine fuse only the anatomy: a crop grown by the margin must fuse its
    inside exactly as the whole slice does."""
    margin = REGISTRY.get("ddcgan").crop_margin
    method = REGISTRY.get("ddcgan").build("cpu")
    a, b = held_out["CT-MRI"]
    whole = method(a[:1], b[:1])
    y0, y1, x0, x1 = 60, 150, 70, 190
    part = method(a[:1, :, y0 - margin:y1 + margin, x0 - margin:x1 + margin],
                  b[:1, :, y0 - margin:y1 + margin, x0 - margin:x1 + margin])
    torch.testing.assert_close(part[..., margin:-margin, margin:-margin], whole[..., y0:y1, x0:x1],
                               atol=1e-5, rtol=0)


# -------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize("name", NETWORKS)
def test_training_smoke_run_resumes_exactly_and_ships_the_network_alone(name, tmp_path, harvard_dir):
    trainable = training.get_trainable(name)
    assert trainable.unit == "pair" and set(trainable.recipes) >= {"cpu", "gpu", "smoke"}
    summary, last = smoke_run_and_resume(trainable, small_training_items(harvard_dir), tmp_path)
    assert summary["best"]["metric"] == "qabf_folder_mean" and np.isfinite(summary["last_loss"])
    with open(tmp_path / "a" / "terms.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and set(rows[0]) == {"step"} | TERMS[name]
    assert all(np.isfinite(float(value)) for row in rows for value in row.values())
    network = NETWORKS[name][1]()
    network.load_state_dict(trainable.shipped(last))  # strict: exactly the shipped network's weights
    assert len(last) > len(network.state_dict())  # the training-only parts were left out


def test_short_gan_run_from_scratch_does_not_collapse(tmp_path, harvard_dir, held_out):
    """A short adversarial run from a fresh generator and discriminators: the losses stay finite, neither
    discriminator wins outright, and the generator already keeps the sources' structure (Q_AB/F above pixel
    averaging on held-out pairs of every modality pair)."""
    trainable = training.get_trainable("ddcgan")
    summary = training.train(trainable, "short", tmp_path, train_items=small_training_items(harvard_dir),
                             val_items=small_training_items(harvard_dir), log=lambda message: None)
    assert summary["finished"]
    with open(tmp_path / "terms.csv") as handle:
        rows = list(csv.DictReader(handle))
    last = rows[-1]
    assert all(np.isfinite(float(v)) for v in last.values())
    assert float(last["d_real"]) - float(last["d_fake"]) < 0.9  # D has not saturated (LSGAN targets 1 / 0)
    generator = ddcgan.DDcGANGenerator()
    generator.load_state_dict(trainable.shipped(torch.load(tmp_path / "last.pt", weights_only=True)["model"]))
    generator.eval()
    with torch.no_grad():
        for folder, (a, b) in held_out.items():
            fused = generator.fuse(a, b)
            assert torch.isfinite(fused).all()
            q_gan, _ = _mean_scores(a, b, fused)
            q_avg, _ = _mean_scores(a, b, (a + b) / 2)
            assert q_gan > q_avg, (folder, q_gan, q_avg)
