"""EDPSN (issue 7) on real Harvard pairs: EEM / HSI, local entropy and its masks, the network, the shipped
weights, fusion quality on held-out validation cases, and a smoke run of its training."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from MedFusionLib import data_split, metrics
from MedFusionTraining import edpsn as edpsn_training, training
from MedFusionLib.errors import InputError, WeightsError
from MedFusionLib.methods import REGISTRY, edpsn
from MedFusionLib.methods import edpsn_modules as modules
from MedFusionLib.weights_store import WEIGHTS_DIR, manifest_entry, sha256_file
from slice_batches import batch as _batch


def _rgb(path):
    return cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1].astype(np.float64) / 255.0


@pytest.fixture(scope="module")
def real_pairs(harvard_dir):
    """One pair of every folder, in the method's order (a = anatomical reference, b = second source)."""
    names = [("CT-MRI", "41010.png"), ("PET-MRI", "41042.png"), ("SPECT-MRI", "29014.png")]
    pairs = {p.key: p for p in data_split.list_pairs(harvard_dir, "all")}
    out = []
    for folder, name in names:
        pair = pairs[f"{folder}/{name}"]
        out.append((data_split.read_y(pair.path_a), data_split.read_y(pair.path_b)))
    return out


@pytest.fixture(scope="module")
def fuse():
    return REGISTRY.get("edpsn").build(torch.device("cpu"))


# ----------------------------------------------------------------------------------------- registry / EEM
def test_registered_as_a_network_with_its_paper():
    info = REGISTRY.get("edpsn")
    assert (info.title, info.kind, info.module) == ("EDPSN", "network", "edpsn")
    assert "Entropy-aware dynamic path selection" in info.reference and "10.1016/j.inffus.2025.103312" in info.reference
    assert "edpsn" in training.TRAINABLES


def test_hsi_round_trip_is_exact_on_real_pet_and_spect(harvard_dir):
    for folder, modality, name in (("PET-MRI", "PET", "41042.png"), ("SPECT-MRI", "SPECT", "29014.png")):
        rgb = _rgb(harvard_dir / folder / modality / name)
        assert np.ptp(rgb, axis=-1).max() > 0.3  # really pseudo-colour
        hsi = modules.rgb_to_hsi(rgb)
        assert hsi.min() >= 0 and hsi.max() <= 1 and hsi[..., 0].max() < 1
        assert np.abs(modules.hsi_to_rgb(hsi) - rgb).max() < 1e-5
    # grey and black pixels (hue undefined) and the six primaries / secondaries
    special = np.array([[0, 0, 0], [1, 1, 1], [0.3, 0.3, 0.3], [1, 0, 0], [0, 1, 0], [0, 0, 1],
                        [1, 1, 0], [0, 1, 1], [1, 0, 1], [0.2, 0.7, 0.9]], dtype=np.float64)
    assert np.abs(modules.hsi_to_rgb(modules.rgb_to_hsi(special)) - special).max() < 1e-12
    assert np.allclose(modules.rgb_to_hsi(special)[:3, :2], 0)  # H = S = 0 where undefined


def test_ccg_is_centre_minus_mean_of_the_eight_neighbours(real_pairs):
    image = real_pairs[1][0]  # MRI
    ccg = modules.central_concentration_gradient(_batch(image))[0, 0].numpy()
    for y, x in ((100, 100), (128, 77), (60, 190), (200, 140)):
        window = image[y - 1:y + 2, x - 1:x + 2].astype(np.float64)
        expected = image[y, x] - (window.sum() - image[y, x]) / 8.0
        assert ccg[y, x] == pytest.approx(expected, abs=1e-6)
    assert abs(ccg.mean()) < 1e-3 and np.abs(ccg).max() > 0.05


def test_eem_on_rgb_enhances_intensity_keeps_hue_and_equals_grey_eem_on_grey(harvard_dir, real_pairs):
    rgb = _rgb(harvard_dir / "PET-MRI" / "PET" / "41042.png")
    out = modules.eem_rgb(rgb)
    assert out.shape == rgb.shape and out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    before, after = modules.rgb_to_hsi(rgb), modules.rgb_to_hsi(out)
    intensity = torch.from_numpy(before[..., 2])[None, None]
    expected_i = modules.eem_grey(intensity)[0, 0].numpy()
    kept = (out.max(-1) < 1 - 1e-6) & (before[..., 1] > 0.05) & (expected_i > 0.05)  # inside the gamut, coloured
    assert kept.mean() > 0.1  # (most of the 256x256 slice is black background)
    assert np.abs(after[..., 2] - expected_i)[kept].max() < 1e-5  # I' = clip(I + CCG(I))
    hue_diff = np.abs(after[..., 0] - before[..., 0])[kept]
    assert np.minimum(hue_diff, 1 - hue_diff).max() < 1e-4  # hue unchanged
    grad = lambda im: np.abs(np.diff(im, axis=1)).mean()  # noqa: E731
    assert grad(after[..., 2]) > 1.2 * grad(before[..., 2])  # edges of I steeper
    grey = real_pairs[0][1]  # an MRI slice as RGB: S = 0, I = Y
    rgb_grey = np.repeat(grey[..., None], 3, axis=-1).astype(np.float64)
    expected = modules.eem_grey(_batch(grey))[0, 0].numpy()
    assert np.abs(modules.eem_rgb(rgb_grey) - expected[..., None]).max() < 1e-6
    assert torch.equal(modules.eem_grey(_batch(grey), 0.0), _batch(grey))


# ------------------------------------------------------------------------------------------------ ED
def _direct_entropy(image, y, x, levels=modules.ENTROPY_LEVELS):
    q = np.clip(np.floor(image.astype(np.float32) * levels), 0, levels - 1)
    padded = np.pad(q, 1, mode="edge")
    _, counts = np.unique(padded[y:y + 3, x:x + 3], return_counts=True)
    p = counts / 9.0
    return float(-(p * np.log2(p)).sum())


def test_local_entropy_matches_a_direct_computation(real_pairs):
    for a, b in real_pairs:
        entropy = modules.local_entropy(_batch(a, b)).numpy()
        assert entropy.shape == (2, 1) + a.shape
        assert entropy.min() >= 0 and entropy.max() <= modules.MAX_ENTROPY + 1e-6
        for index, image in enumerate((a, b)):
            for y, x in ((0, 0), (255, 17), (96, 128), (128, 64), (140, 150), (170, 100), (77, 201)):
                assert entropy[index, 0, y, x] == pytest.approx(_direct_entropy(image, y, x), abs=1e-5)
            assert entropy[index, 0][image > 0.1].mean() > 0.3  # tissue carries information
            assert entropy[index, 0, :3, :3].max() == 0  # black corner: no information


def test_entropy_masks_partition_real_images_into_three_ordered_levels(real_pairs):
    a = _batch(*(p[0] for p in real_pairs))
    b = _batch(*(p[1] for p in real_pairs))
    joint = torch.maximum(modules.local_entropy(a), modules.local_entropy(modules.eem_grey(b)))
    masks = modules.entropy_masks(joint)
    assert masks.shape == (3, 3, 256, 256)
    assert set(masks.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(masks.sum(1), torch.ones(3, 256, 256))  # disjoint and covering every pixel
    for i in range(3):
        levels = [joint[i, 0][masks[i, k] > 0] for k in range(3)]
        assert all(len(level) > 500 for level in levels)  # every level present on real slices
        assert levels[0].max() < levels[1].min() and levels[1].max() < levels[2].min()  # ordered, no overlap
    # the thresholds maximise the between-class variance of the entropy histogram (brute force over all pairs)
    index, t1, t2 = modules.otsu3_bins(joint)
    centres = (np.arange(modules.ENTROPY_BINS) + 0.5) * modules.MAX_ENTROPY / modules.ENTROPY_BINS
    for i in range(3):
        p = np.bincount(index[i].flatten().numpy(), minlength=modules.ENTROPY_BINS) / index[i].numel()

        def between(t, u):
            classes = (slice(0, t + 1), slice(t + 1, u + 1), slice(u + 1, None))
            return sum((p[c] * centres[c]).sum() ** 2 / p[c].sum() for c in classes if p[c].sum() > 0)

        best = max(between(t, u) for t in range(len(p)) for u in range(t + 1, len(p)))
        assert int(t1[i]) < int(t2[i]) and between(int(t1[i]), int(t2[i])) == pytest.approx(best, rel=1e-12)
    # a constant image: one level only, still a partition
    flat = modules.entropy_masks(modules.local_entropy(torch.full((1, 1, 16, 16), 0.5)))
    assert torch.equal(flat.sum(1), torch.ones(1, 16, 16)) and float(flat[0, 0].min()) == 1.0


def test_modules_shapes_on_real_pairs(real_pairs, fuse):
    model = fuse.model
    a = _batch(*(p[0] for p in real_pairs))
    b = _batch(*(p[1] for p in real_pairs))
    with torch.inference_mode():
        masks = model.divide(a, modules.eem_grey(b))
        shallow = torch.nn.functional.leaky_relu(model.shallow(torch.cat([a, modules.eem_grey(b)], 1)), 0.2)
        assert masks.shape == (3, 3, 256, 256) and shallow.shape == (3, edpsn.CHANNELS, 256, 256)
        for k, path in enumerate(model.paths):
            assert len(path.blocks) == edpsn.PATH_DEPTHS[k]
            assert path(shallow * masks[:, k:k + 1]).shape == shallow.shape
        block = model.paths[0].blocks[0]
        assert [conv.dilation for conv in block.branches] == [(1, 1), (2, 2), (3, 3)]
        assert model(a, b).shape == (3, 1, 256, 256)


# ------------------------------------------------------------------------------------ weights / contract
def test_weights_load_offline_sha256_checked(tmp_path):
    entry = manifest_entry("edpsn")
    path = WEIGHTS_DIR / entry["file"]
    assert path.stat().st_size < 5 * 1024 * 1024 and sha256_file(path) == entry["sha256"]
    assert entry["architecture"] == edpsn.ARCHITECTURE
    assert entry["parameters"] == edpsn.count_parameters(edpsn.EDPSN())
    assert "MFEnet" in entry["recipe"]["loss"] and entry["validation"]["metric"] == "mean_Q_ABF"
    shutil.copy(path, tmp_path / entry["file"])
    (tmp_path / "manifest.json").write_text(json.dumps({"format": 1, "entries": [entry]}))
    edpsn.load_model("cpu", weights_dir=tmp_path)  # loads from a copy: no network, no default folder needed
    data = bytearray((tmp_path / entry["file"]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / entry["file"]).write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="corrupted"):
        edpsn.build(torch.device("cpu"), weights_dir=tmp_path)


def test_eem_option_reaches_the_network(fuse, real_pairs):
    """Shapes, range, untouched inputs and any slice size: test_method_contract.py."""
    a = _batch(*(p[0] for p in real_pairs))
    b = _batch(*(p[1] for p in real_pairs))
    fused = fuse(a, b)
    off = REGISTRY.get("edpsn").build(torch.device("cpu"), eem_weight=0)
    assert not torch.equal(off(a, b), fused)  # the EEM option reaches the network
    for bad in (-1, "x", float("nan")):
        with pytest.raises(InputError, match="eem_weight"):
            REGISTRY.get("edpsn").build(torch.device("cpu"), eem_weight=bad)


def test_fusion_of_validation_pairs_is_deterministic_and_beats_average(harvard_dir, fuse):
    """Held-out cases only (data_split's validation cases): per folder, mean Q_AB/F and VIFF above averaging."""
    pairs = data_split.list_pairs(harvard_dir, "val")
    for folder in data_split.FOLDERS:
        of = [p for p in pairs if p.folder == folder]
        chosen = [of[i] for i in np.linspace(0, len(of) - 1, 4).round().astype(int)]
        a = _batch(*(data_split.read_y(p.path_a) for p in chosen))
        b = _batch(*(data_split.read_y(p.path_b) for p in chosen))
        fused = fuse(a, b)
        assert torch.equal(fused, fuse(a, b))  # bit-identical on the CPU
        scores = {"edpsn": [], "average": []}
        for i in range(len(chosen)):
            x, y = a[i, 0].numpy(), b[i, 0].numpy()
            for name, f in (("edpsn", fused[i, 0].numpy()), ("average", (x + y) / 2)):
                scores[name].append((metrics.qabf(x, y, f, data_range=1.0), metrics.viff(x, y, f, data_range=1.0)))
        ours, average = np.mean(scores["edpsn"], axis=0), np.mean(scores["average"], axis=0)
        assert ours[0] > average[0], (folder, "Q_ABF", ours, average)
        assert ours[1] > average[1], (folder, "VIFF", ours, average)


# ------------------------------------------------------------------------------------------- training
def test_training_smoke_run_and_export(harvard_dir, tmp_path):
    trainable = training.get_trainable("edpsn")
    assert trainable.unit == "pair" and {"cpu", "paper", "smoke"} <= set(trainable.recipes)
    assert trainable.recipes["paper"].lr == 1e-4 and trainable.recipes["paper"].epochs == 100
    pairs = training.load_items(harvard_dir, "train", "pair", max_per_folder=1)
    val = training.load_items(harvard_dir, "val", "pair", max_per_folder=1)
    assert pairs.images.shape[1:] == (2, 256, 256) and all(m["case"] not in ("41", "29") for m in pairs.meta)
    summary = training.train(trainable, "smoke", tmp_path / "run", seed=3, train_items=pairs, val_items=val,
                             log=lambda msg: None)
    assert summary["finished"] and summary["steps"] == 3 and np.isfinite(summary["last_loss"])
    assert summary["best"]["metric"] == "mean_Q_ABF" and 0 < summary["best"]["value"] < 1
    assert (tmp_path / "run" / "best.pt").exists() and (tmp_path / "run" / "log.csv").exists()
    # the loss: its three terms are finite and the perceptual network is the frozen MFEnet encoder
    a, b = torch.from_numpy(pairs.images[:2, :1, :64, :64]), torch.from_numpy(pairs.images[:2, 1:, :64, :64])
    encoder = edpsn_training.perceptual_encoder("cpu")
    assert not any(p.requires_grad for p in encoder.parameters())
    total, parts = edpsn_training.fusion_loss(torch.maximum(a, b), a, b, encoder)
    assert set(parts) == {"intensity", "gradient", "perceptual"} and float(parts["intensity"]) == 0.0
    assert float(total) == pytest.approx(sum(float(v) * w for v, w in zip(
        parts.values(), (1.0, edpsn_training.GRAD_WEIGHT, edpsn_training.PERCEPTUAL_WEIGHT))), rel=1e-5)
