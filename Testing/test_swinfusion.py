"""SwinFusion-S (transformer family): shipped weights, window attention, fusion on held-out pairs, any size,
the paper's loss terms, training smoke run.

Real code paths only: the shipped weights, the shared Harvard images (validation cases from data_split), the
real training machinery. Without the shared data these tests skip locally and FAIL in CI.
"""
from __future__ import annotations

import torch

from conftest import harvard_pair
from training_checks import small_training_items, smoke_run_and_resume
from slice_batches import batch as _batch
from validation_checks import (assert_any_size_and_constant_input, assert_fuses_held_out_pairs,
                               assert_untrained_is_the_soft_max_rule)
from weights_checks import assert_bad_weights_raise, assert_manifest_entry, refuse_network
from MedFusionLib.methods import REGISTRY, swinfusion
from MedFusionTraining import training
from MedFusionTraining.swinfusion import loss_terms



# --------------------------------------------------------------------------------------------- weights
def test_registry_entry_and_size():
    info = REGISTRY.get("swinfusion")
    assert (info.family, info.kind, info.module) == ("transformer", "network", "swinfusion")
    assert "SwinFusion" in info.reference
    from torch.utils.flop_counter import FlopCounterMode

    model = swinfusion.SwinFusionS().eval()
    assert swinfusion.count_parameters(model) < 50_000
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.fuse(torch.rand(1, 1, 256, 256), torch.rand(1, 1, 256, 256))
    assert counter.get_total_flops() < 3e9  # sized for CPU: under 3 GFLOPs per 256x256 pair


def test_shipped_weights_load_offline_and_match_the_manifest(monkeypatch):
    assert_manifest_entry("swinfusion", swinfusion.ARCHITECTURE, swinfusion.count_parameters(swinfusion.SwinFusionS()))
    refuse_network(monkeypatch, "SwinFusion-S")
    fuse = REGISTRY.get("swinfusion").build("cpu")
    assert not fuse.model.training
    assert float(fuse.model.head[-1].weight.detach().abs().sum()) > 0  # trained: the zero-initialised head moved


def test_corrupted_or_missing_weights_raise_weights_error(tmp_path):
    assert_bad_weights_raise(swinfusion.build, "swinfusion", tmp_path)


# --------------------------------------------------------------------------------------- attention parts
def test_windows_partition_exactly_and_the_shift_mask_separates_regions():
    x = torch.arange(2 * 16 * 24 * 3, dtype=torch.float32).view(2, 16, 24, 3)
    windows = swinfusion.window_partition(x, 8)
    assert windows.shape == (2 * 2 * 3, 64, 3)
    assert torch.equal(windows[1].view(8, 8, 3), x[0, :8, 8:16])  # second window: first row, second column
    assert torch.equal(swinfusion.window_reverse(windows, 8, 2, 16, 24), x)
    mask = swinfusion.shifted_window_mask(16, 24, 8, 4, "cpu")
    assert mask.shape == (6, 64, 64)
    assert float(mask[0].abs().max()) == 0.0  # a window away from the wrap-around is one region
    last = mask[-1]  # the bottom-right window holds four regions after the cyclic shift
    assert float(last[0, 0]) == 0.0 and float(last[0, 63]) < -50 and float(last[0, 4]) < -50


# ---------------------------------------------------------------------------------------------- fusion
def test_fuses_validation_pairs_deterministically_and_beats_average(harvard_dir):
    fuse = REGISTRY.get("swinfusion").build("cpu")
    assert_fuses_held_out_pairs(fuse, harvard_dir, "PET-MRI")


def test_any_size_and_a_constant_input(harvard_dir):
    a, b = harvard_pair("PET-MRI", "41066.png")
    fuse = swinfusion.build("cpu")
    x, y = _batch(a[20:121, 30:105]), _batch(b[20:121, 30:105])  # 101 x 75: not a multiple of the windows
    fused = assert_any_size_and_constant_input(fuse, x, y)
    assert fused.shape == (1, 1, 101, 75)


def test_untrained_network_is_the_soft_max_rule(harvard_dir):
    a, b = harvard_pair("CT-MRI", "41012.png")
    x, y = _batch(a), _batch(b)
    assert_untrained_is_the_soft_max_rule(swinfusion.SwinFusionS(), x, y)


def test_loss_terms_reward_the_sources_structure(harvard_dir):
    a, b = harvard_pair("SPECT-MRI", "29015.png")
    x, y = _batch(a), _batch(b)
    best, average = loss_terms(torch.maximum(x, y), x, y), loss_terms((x + y) / 2, x, y)
    assert float(best["int"]) == 0.0 and float(average["int"]) > 0
    assert float(best["text"]) < float(average["text"])
    assert all(torch.isfinite(v) for v in best.values())


# -------------------------------------------------------------------------------------------- training
def test_training_smoke_runs_validates_and_resumes_exactly(tmp_path, harvard_dir):
    trainable = training.get_trainable("swinfusion")
    assert trainable.unit == "pair" and set(trainable.recipes) >= {"cpu", "gpu", "smoke"}
    summary, first = smoke_run_and_resume(trainable, small_training_items(harvard_dir), tmp_path)
    assert summary["finished"] and summary["best"]["metric"] == "qabf_folder_mean"
    assert 0 < summary["best"]["value"] <= 1
    assert float(first["head.2.weight"].abs().sum()) > 0  # it learnt
