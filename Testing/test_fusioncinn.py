"""FusionCINN: invertible blocks, wavelet conditions, log-determinant, shipped weights, fusion quality, training.

Real code paths only: the shipped weights, the shared Harvard images (validation cases from data_split), the
real training machinery. Without the shared data these tests skip locally and FAIL in CI.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from conftest import harvard_pair
from training_checks import small_training_items, smoke_run_and_resume
from weights_checks import assert_bad_weights_raise, build_offline
from MedFusionLib import data_split, weights_store
from MedFusionTraining import fusioncinn as fusioncinn_training, training
from MedFusionLib.methods import REGISTRY, fusioncinn
from MedFusionLib.methods.cinn_blocks import (
    ChannelPermutation,
    ConditionalAffineCoupling,
    HaarDownsample,
    WaveletConditions,
)
from MedFusionLib.metrics import qabf
from slice_batches import batch as _batch, spread_validation_pairs

# One held-out (validation-case) pair per folder.
REAL_PAIRS = [("CT-MRI", "41012.png"), ("PET-MRI", "41066.png"), ("SPECT-MRI", "29015.png")]


@pytest.fixture(scope="module")
def model():
    return fusioncinn.load_model("cpu")


# ------------------------------------------------------------------------------------------ wavelet conditions
def _hand_haar(x: np.ndarray):
    """One Haar level by explicit loops over 2x2 blocks [[p, q], [r, s]] (orthonormal, LL/LH/HL/HH)."""
    h, w = x.shape[0] // 2, x.shape[1] // 2
    out = np.zeros((4, h, w))
    for i in range(h):
        for j in range(w):
            p, q, r, s = x[2 * i, 2 * j], x[2 * i, 2 * j + 1], x[2 * i + 1, 2 * j], x[2 * i + 1, 2 * j + 1]
            out[:, i, j] = [(p + q + r + s) / 2, (p - q + r - s) / 2, (p + q - r - s) / 2, (p - q - r + s) / 2]
    return out


def test_wavelet_conditions_are_fixed_and_match_hand_computed_haar(harvard_dir):
    wavelets = WaveletConditions(3)
    assert list(wavelets.parameters()) == []
    model = fusioncinn.FusionCINN()
    assert list(model.wavelets.parameters()) == []
    assert not any(k.startswith("wavelets.") for k in model.state_dict())  # nothing trained, nothing stored
    trainable_names = {name for name, p in model.named_parameters() if p.requires_grad}
    assert not any(name.startswith("wavelets") for name in trainable_names)

    a, _ = harvard_pair("CT-MRI", "41012.png")
    x = a[100:116, 120:136].astype(np.float64)  # a real 16x16 patch
    levels = wavelets.double()(torch.from_numpy(x)[None, None])
    assert [tuple(c.shape) for c in levels] == [(1, 4, 8, 8), (1, 4, 4, 4), (1, 4, 2, 2)]
    low = x
    for coeffs in levels:
        expected = _hand_haar(low)
        np.testing.assert_allclose(coeffs[0].numpy(), expected, atol=1e-12)
        low = expected[0]


def test_haar_downsample_is_orthonormal_and_inverts():
    torch.manual_seed(0)
    down = HaarDownsample()
    x = torch.rand(2, 3, 8, 12, dtype=torch.float64)
    y, logdet = down.double()(x)
    assert y.shape == (2, 12, 4, 6) and torch.all(logdet == 0)
    assert torch.allclose(y.norm(), x.norm())  # orthonormal: |det| = 1
    assert torch.allclose(down.inverse(y), x, atol=1e-12)
    perm = ChannelPermutation(12, seed=3)
    shuffled, _ = perm(y)
    assert torch.equal(perm.inverse(shuffled), y) and not torch.equal(shuffled, y)


def test_coupling_logdet_matches_numerical_jacobian():
    torch.manual_seed(0)
    coupling = ConditionalAffineCoupling(4, 4, hidden=8, clamp=2.0).double()
    for p in coupling.parameters():  # leave the identity start: random scales and shifts
        torch.nn.init.normal_(p, std=0.3)
    x = torch.rand(1, 4, 4, 4, dtype=torch.float64)
    cond = torch.rand(1, 4, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        y, logdet = coupling(x, cond)
    jac = torch.autograd.functional.jacobian(lambda v: coupling(v.view_as(x), cond)[0].flatten(), x.flatten())
    sign, logabs = torch.linalg.slogdet(jac)
    assert abs(float(logdet) - float(logabs)) < 1e-9 and abs(float(logdet)) > 0.1
    assert torch.allclose(coupling.inverse(y, cond), x, atol=1e-12)


# --------------------------------------------------------------------------------------- the trained flow
def test_flow_logdet_matches_numerical_jacobian(model, harvard_dir):
    flow = copy.deepcopy(model.flow).double()
    a, b = harvard_pair("CT-MRI", "41012.png")
    # Real 64x64 regions averaged down to 16x16 (the smallest size the four levels allow): 256 x 256 Jacobian.
    x = torch.from_numpy(a[96:160, 96:160].reshape(16, 4, 16, 4).mean((1, 3)).astype(np.float64))[None, None]
    c = torch.from_numpy(b[96:160, 96:160].reshape(16, 4, 16, 4).mean((1, 3)).astype(np.float64))[None, None]
    conds = WaveletConditions(fusioncinn.LEVELS).double()(c)

    def latent(v):
        return torch.cat([t.flatten() for t in flow(v.view_as(x), conds)[0]])

    with torch.no_grad():
        _, logdet = flow(x, conds)
    jac = torch.autograd.functional.jacobian(latent, x.flatten())
    assert jac.shape == (256, 256)
    sign, logabs = torch.linalg.slogdet(jac)
    assert sign != 0
    assert abs(float(logdet) - float(logabs)) < 1e-8 * max(1.0, abs(float(logabs)))
    assert abs(float(logdet)) > 1e-2  # the trained couplings do scale


@pytest.mark.parametrize("folder,name", REAL_PAIRS)
def test_flow_inverts_real_images_in_float32(model, harvard_dir, folder, name):
    a, b = harvard_pair(folder, name)
    x = _batch(a, b)
    conds = [torch.cat([cb, ca]) for ca, cb in zip(*(model.wavelets(t) for t in (x[:1], x[1:])))]
    with torch.inference_mode():
        z, _ = model.flow(x, conds)  # f(a; c_b), f(b; c_a)
        back = model.flow.inverse(z, conds)
        assert (back - x).abs().max() < 1e-4
        # and the other way round, from the fused latents with the fused conditions
        c_f, z_ab, z_ba, _, _ = model.analyse(x[:1], x[1:])
        z_f = model.fuse_latents(z_ab, z_ba)
        fused = model.flow.inverse(z_f, c_f)
        again, _ = model.flow(fused, c_f)
    for u, v in zip(again, z_f):
        assert (u - v).abs().max() < 1e-4 * max(1.0, float(v.abs().max()))


# --------------------------------------------------------------------------------------------- weights
def test_registry_entry():
    info = REGISTRY.get("fusioncinn")
    assert (info.title, info.kind, info.module) == ("FusionCINN", "network", "fusioncinn")
    assert "conditional reversible neural network" in info.reference.lower()


def test_shipped_weights_load_offline_and_match_the_manifest(monkeypatch):
    entry = weights_store.manifest_entry("fusioncinn")
    path = weights_store.weights_path("fusioncinn")
    assert entry["sha256"] == weights_store.sha256_file(path)
    assert path.stat().st_size < 5 * 2 ** 20
    assert entry["architecture"] == fusioncinn.ARCHITECTURE
    assert entry["parameters"] == fusioncinn.count_parameters(fusioncinn.FusionCINN())
    assert entry["data"]["validation_cases"] == {k: list(v) for k, v in data_split.VALIDATION_CASES.items()}
    assert entry["recipe"]["command"] and entry["recipe"]["seed"] is not None
    fuse = build_offline(monkeypatch, "fusioncinn")
    assert not fuse.model.training


def test_corrupted_or_missing_weights_raise_weights_error(tmp_path):
    assert_bad_weights_raise(fusioncinn.build, "fusioncinn", tmp_path)


# ---------------------------------------------------------------------------------------------- fusion


def test_fuses_validation_pairs_better_than_average(harvard_dir):
    fuse = REGISTRY.get("fusioncinn").build("cpu")
    for folder, pairs in spread_validation_pairs(harvard_dir, per_folder=4).items():
        assert all(data_split.split_of(p.folder, p.case) == "val" for p in pairs)
        a = _batch(*(data_split.read_y(p.path_a) for p in pairs))
        b = _batch(*(data_split.read_y(p.path_b) for p in pairs))
        fused = fuse(a, b)  # determinism, untouched inputs, shape and range: test_method_contract.py
        average = (a + b) / 2
        q_cinn = np.mean([qabf(x[0], y[0], f[0], data_range=1.0) for x, y, f in zip(a.numpy(), b.numpy(), fused.numpy())])
        q_avg = np.mean([qabf(x[0], y[0], f[0], data_range=1.0) for x, y, f in zip(a.numpy(), b.numpy(), average.numpy())])
        assert q_cinn > q_avg + 0.05, (folder, q_cinn, q_avg)


def test_sizes_not_divisible_by_16_are_padded_and_cropped_back(harvard_dir):
    a, b = harvard_pair("CT-MRI", "41012.png")
    fuse = fusioncinn.build("cpu")
    x, y = _batch(a[20:120, 30:105]), _batch(b[20:120, 30:105])  # 100 x 75
    fused = fuse(x, y)
    assert fused.shape == (1, 1, 100, 75) and 0 <= float(fused.min()) and float(fused.max()) <= 1
    tiny = fuse(x[..., :9, :7], y[..., :9, :7])  # smaller than one 16x16 block: replicate padding
    assert tiny.shape == (1, 1, 9, 7)
    assert fusioncinn.pad_to_multiple(torch.zeros(1, 1, 100, 75)).shape == (1, 1, 112, 80)


def test_fusion_target_keeps_the_salient_source(harvard_dir):
    a, b = harvard_pair("CT-MRI", "41012.png")
    x, y = _batch(a), _batch(b)
    target = fusioncinn_training.fusion_target(x, y)
    assert target.shape == x.shape and 0 <= float(target.min()) and float(target.max()) <= 1
    assert torch.allclose(fusioncinn_training.fusion_target(x, x), x, atol=1e-5)  # fusing an image with itself
    # bright CT bone survives (an averaged base would halve it where the MRI is dark)
    bone = (x > 0.9) & (y < 0.2)
    assert bone.any() and float(target[bone].mean()) > 0.8


# -------------------------------------------------------------------------------------------- training
def test_training_smoke_runs_validates_and_resumes_exactly(tmp_path, harvard_dir):
    trainable = training.get_trainable("fusioncinn")
    assert trainable.unit == "pair" and trainable.recipes["paper"].lr == 5e-5
    assert trainable.recipes["paper"].batch_size == 8 and trainable.recipes["paper"].weight_decay == 1e-5
    summary, _ = smoke_run_and_resume(trainable, small_training_items(harvard_dir), tmp_path)
    assert summary["finished"] and summary["best"]["metric"] == "qabf_folder_mean"
    assert 0 < summary["best"]["value"] <= 1
