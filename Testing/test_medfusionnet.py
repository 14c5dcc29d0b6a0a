"""MedFusion-Net: shipped weights, fusion on real held-out pairs, any size, loss terms, training smoke run.

Real code paths only: the shipped weights, the shared Harvard images (validation cases from data_split), the
real training machinery. Without the shared data these tests skip locally and FAIL in CI.
"""
from __future__ import annotations


import numpy as np
import pytest
import torch

from conftest import harvard_pair
from training_checks import small_training_items, smoke_run_and_resume
from validation_checks import assert_any_size_and_constant_input, assert_untrained_is_the_soft_max_rule
from weights_checks import assert_bad_weights_raise, build_offline
from MedFusionLib import data_split, weights_store
from MedFusionLib.methods import REGISTRY, medfusionnet
from MedFusionLib.metrics import qabf
from MedFusionTraining import training
from MedFusionTraining.medfusionnet import LOSS_WEIGHTS, PAIR_LOSS_WEIGHTS, loss_terms, make_loss, pair_batch, ssim
from slice_batches import batch as _batch, spread_validation_pairs


# --------------------------------------------------------------------------------------------- weights
def test_registry_entry_and_size():
    info = REGISTRY.get("medfusionnet")
    assert (info.title, info.kind, info.module) == ("MedFusion-Net", "network", "medfusionnet")
    from torch.utils.flop_counter import FlopCounterMode

    model = medfusionnet.MedFusionNet().eval()
    assert medfusionnet.count_parameters(model) < 20_000
    with FlopCounterMode(display=False) as counter:
        model.fuse(torch.rand(1, 1, 256, 256), torch.rand(1, 1, 256, 256))
    stated = medfusionnet.flops_per_pixel() * 256 * 256
    assert abs(counter.get_total_flops() - stated) < 0.05 * stated  # the stated cost is the real one
    assert stated < 1e9  # under 1 GFLOP per 256x256 pair


def test_shipped_weights_load_offline_and_match_the_manifest(monkeypatch):
    entry = weights_store.manifest_entry("medfusionnet")
    path = weights_store.weights_path("medfusionnet")
    assert entry["sha256"] == weights_store.sha256_file(path)
    assert entry["architecture"] == medfusionnet.ARCHITECTURE
    assert entry["parameters"] == medfusionnet.count_parameters(medfusionnet.MedFusionNet())
    assert entry["data"]["validation_cases"] == {k: list(v) for k, v in data_split.VALIDATION_CASES.items()}
    assert entry["recipe"]["command"] and entry["recipe"]["seed"] == 0
    fuse = build_offline(monkeypatch, "medfusionnet")
    assert not fuse.model.training
    untrained = medfusionnet.MedFusionNet().state_dict()
    assert not torch.equal(fuse.model.state_dict()["head.2.weight"], untrained["head.2.weight"])  # it was trained


def test_corrupted_or_missing_weights_raise_weights_error(tmp_path):
    assert_bad_weights_raise(medfusionnet.build, "medfusionnet", tmp_path)


# ---------------------------------------------------------------------------------------------- fusion
def test_fuses_validation_pairs_deterministically_and_beats_average(harvard_dir):
    fuse = REGISTRY.get("medfusionnet").build("cpu")
    for folder, pairs in spread_validation_pairs(harvard_dir, per_folder=3).items():
        assert all(data_split.split_of(p.folder, p.case) == "val" for p in pairs)
        a = _batch(*(data_split.read_y(p.path_a) for p in pairs))
        b = _batch(*(data_split.read_y(p.path_b) for p in pairs))
        a_copy, b_copy = a.clone(), b.clone()
        fused = fuse(a, b)
        assert torch.equal(fused, fuse(a, b))  # deterministic on the CPU
        assert torch.equal(a, a_copy) and torch.equal(b, b_copy)  # inputs untouched
        assert fused.dtype == torch.float32 and fused.shape == a.shape
        assert torch.isfinite(fused).all() and 0 <= float(fused.min()) and float(fused.max()) <= 1
        average = (a + b) / 2

        def mean_qabf(f):
            return np.mean([qabf(x[0], y[0], z[0], data_range=1.0) for x, y, z in zip(a.numpy(), b.numpy(), f.numpy())])

        q_net, q_avg = mean_qabf(fused), mean_qabf(average)
        assert q_net > q_avg + 0.1, (folder, q_net, q_avg)


def test_any_size_and_a_constant_input(harvard_dir):
    a, b = harvard_pair("PET-MRI", "41066.png")
    fuse = medfusionnet.build("cpu")
    x, y = _batch(a[20:121, 30:105]), _batch(b[20:121, 30:105])  # 101 x 75: not a multiple of the pooling
    assert_any_size_and_constant_input(fuse, x, y)
    # The network also sees image-level statistics (FiLM), so only a crop that holds most of the slice's
    # foreground fuses like the whole slice: 177 x 175, again not a multiple of the pooling.
    whole = fuse(_batch(a), _batch(b))[..., 40:217, 40:215]
    large = fuse(_batch(a[40:217, 40:215]), _batch(b[40:217, 40:215]))
    inner = (slice(None), slice(None), slice(20, -20), slice(20, -20))  # away from the crop's borders
    assert float((large[inner] - whole[inner]).abs().max()) < 0.05  # the crop fuses like the whole image


def test_untrained_network_is_the_soft_max_rule(harvard_dir):
    a, b = harvard_pair("CT-MRI", "41012.png")
    x, y = _batch(a), _batch(b)
    fused = assert_untrained_is_the_soft_max_rule(medfusionnet.MedFusionNet(), x, y)
    assert float((fused - torch.maximum(x, y)).abs().mean()) < 0.01


def test_loss_terms_reward_the_sources_structure(harvard_dir):
    a, b = harvard_pair("SPECT-MRI", "29015.png")
    x, y = _batch(a), _batch(b)
    assert abs(float(ssim(x, x)) - 1.0) < 1e-6
    best, average = loss_terms(torch.maximum(x, y), x, y), loss_terms((x + y) / 2, x, y)
    assert float(best["intensity"]) == 0.0
    assert float(best["gradient"]) < float(average["gradient"])
    assert all(torch.isfinite(v) for v in best.values())


def test_each_modality_pair_is_trained_with_its_own_loss(harvard_dir):
    ct, spect = harvard_pair("CT-MRI", "41012.png"), harvard_pair("SPECT-MRI", "29015.png")
    patches = torch.cat([torch.from_numpy(np.stack(p)[None, :, 64:192, 64:192]) for p in (ct, spect)])
    batch = pair_batch(patches, None, meta=[{"folder": "CT-MRI"}, {"folder": "SPECT-MRI"}])
    assert batch["folders"] == ["CT-MRI", "SPECT-MRI"] and batch["a"].shape == (2, 1, 128, 128)
    model = medfusionnet.MedFusionNet()
    torch.nn.init.normal_(model.head[2].weight, std=0.1)  # not the identity rule, so the losses differ
    with torch.no_grad():
        fused = model(batch["a"], batch["b"])
    ct_weights = dict(LOSS_WEIGHTS, **PAIR_LOSS_WEIGHTS["CT-MRI"])
    assert ct_weights != LOSS_WEIGHTS  # CT-MRI has a loss of its own

    def by_hand(i, weights):
        terms = loss_terms(fused[i:i + 1], batch["a"][i:i + 1], batch["b"][i:i + 1], gain=weights["gain"],
                           soft=bool(weights["soft"]))
        return sum(weights[k] * float(terms[k]) for k in ("intensity", "gradient", "structure", "scd", "contrast"))

    with torch.no_grad():
        mixed = float(make_loss(LOSS_WEIGHTS, PAIR_LOSS_WEIGHTS)(model, batch))
        no_pairs = float(make_loss(LOSS_WEIGHTS, PAIR_LOSS_WEIGHTS)(model, {"a": batch["a"], "b": batch["b"]}))
    assert mixed == pytest.approx((by_hand(0, ct_weights) + by_hand(1, LOSS_WEIGHTS)) / 2, rel=1e-5)
    assert no_pairs == pytest.approx((by_hand(0, LOSS_WEIGHTS) + by_hand(1, LOSS_WEIGHTS)) / 2, rel=1e-5)
    brighter = loss_terms(torch.maximum(batch["a"], batch["b"]), batch["a"], batch["b"], gain=1.05)
    assert float(brighter["intensity"]) > 0  # the gained target asks for more than max(A, B)


# -------------------------------------------------------------------------------------------- training
def test_training_smoke_runs_validates_and_resumes_exactly(tmp_path, harvard_dir):
    trainable = training.get_trainable("medfusionnet")
    assert trainable.unit == "pair" and set(trainable.recipes) >= {"cpu", "gpu", "smoke"}
    summary, first = smoke_run_and_resume(trainable, small_training_items(harvard_dir), tmp_path)
    assert summary["finished"] and summary["best"]["metric"] == "qabf_folder_mean"
    assert 0 < summary["best"]["value"] <= 1 and np.isfinite(summary["last_loss"])
    assert not torch.equal(first["head.2.weight"], torch.zeros_like(first["head.2.weight"]))  # it learnt
