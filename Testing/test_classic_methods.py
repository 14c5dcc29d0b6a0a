"""Classic fusion rules on real Harvard pairs: value range, detail (spatial frequency), contract, properties."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import harvard_pair
from MedFusionLib.errors import InputError
from MedFusionLib.methods import REGISTRY
from MedFusionLib.methods._filters import box_mean, guided_filter
from slice_batches import batch as _batch

CLASSIC = [info.name for info in REGISTRY.infos() if info.kind == "classic"]
# A few pairs of every modality folder (colour PET/SPECT reduced to their luma Y).
PAIRS = [("CT-MRI", "2004.png"), ("CT-MRI", "32016.png"), ("PET-MRI", "25015.png"), ("SPECT-MRI", "11005.png")]


def spatial_frequency(image: np.ndarray) -> float:
    """Eskicioglu & Fisher 1995: sqrt(RF^2 + CF^2) of first differences (on 0-255 values)."""
    x = image.astype(np.float64) * 255.0
    rf = np.sqrt(np.mean(np.diff(x, axis=1) ** 2))
    cf = np.sqrt(np.mean(np.diff(x, axis=0) ** 2))
    return float(np.hypot(rf, cf))


@pytest.fixture(scope="module")
def pairs(harvard_dir):
    return [harvard_pair(folder, name) for folder, name in PAIRS]


def test_every_classic_method_is_registered_with_a_reference():
    assert set(CLASSIC) == {"average", "max", "pca", "laplacian", "dwt", "gff"}
    for name in CLASSIC:
        info = REGISTRY.get(name)
        assert len(info.reference) > 30, name
        module = __import__(f"MedFusionLib.methods.{info.module}", fromlist=["x"])
        assert module.__doc__ or getattr(module, info.factory).__doc__ or info.reference


@pytest.mark.parametrize("name", CLASSIC)
def test_classic_method_on_real_pairs(name, pairs):
    """More detail than averaging (shape, range, untouched inputs, determinism: test_method_contract.py)."""
    fuse = REGISTRY.get(name).build(torch.device("cpu"))
    a = _batch(*(p[0] for p in pairs))
    b = _batch(*(p[1] for p in pairs))
    fused = fuse(a, b)
    if name != "average":
        for index, (pa, pb) in enumerate(pairs):
            baseline = spatial_frequency((pa + pb) / 2)
            assert spatial_frequency(fused[index, 0].numpy()) > baseline, PAIRS[index]


def test_batch_results_equal_single_slice_results(pairs):
    """Batching is an optimisation only: slice i of a batch equals slice i fused alone."""
    a = _batch(*(p[0] for p in pairs))
    b = _batch(*(p[1] for p in pairs))
    for name in CLASSIC:
        fuse = REGISTRY.get(name).build(torch.device("cpu"))
        together = fuse(a, b)
        alone = fuse(a[2:3], b[2:3])
        torch.testing.assert_close(together[2:3], alone, atol=1e-6, rtol=0), name


def test_fusing_an_image_with_itself_returns_it(pairs):
    a = _batch(pairs[0][0])
    for name in CLASSIC:
        fused = REGISTRY.get(name).build(torch.device("cpu"))(a, a.clone())
        torch.testing.assert_close(fused, a, atol=2e-3, rtol=0), name


def test_pca_weights_favour_the_higher_variance_source():
    rng = np.random.default_rng(0)
    strong = rng.random((64, 64)).astype(np.float32)
    weak = (0.5 + 0.1 * (strong - 0.5)).astype(np.float32)  # same pattern, a tenth of the contrast
    fused = REGISTRY.get("pca").build("cpu")(_batch(strong), _batch(weak))[0, 0].numpy()
    # Principal eigenvector of [[v, 0.1v], [0.1v, 0.01v]] is (1, 0.1): weights 1/1.1 and 0.1/1.1.
    np.testing.assert_allclose(fused, (strong + 0.1 * weak) / 1.1, atol=1e-5)


def test_max_rule_keeps_the_larger_value():
    a = torch.tensor([[[[0.2, 0.9], [0.5, 0.0]]]])
    b = torch.tensor([[[[0.3, 0.1], [0.5, 0.7]]]])
    assert REGISTRY.get("max").build("cpu")(a, b).flatten().tolist() == pytest.approx([0.3, 0.9, 0.5, 0.7])


def test_box_mean_and_guided_filter_match_definitions():
    x = torch.rand(2, 1, 37, 53, dtype=torch.float32)
    expected = torch.nn.functional.avg_pool2d(x, 7, 1, 3, count_include_pad=False)
    torch.testing.assert_close(box_mean(x, 3), expected, atol=1e-6, rtol=0)
    # A guided filter with a tiny eps preserves the guide itself (a = 1, b = 0).
    torch.testing.assert_close(guided_filter(x, x, 4, 1e-8), x, atol=1e-4, rtol=0)


def test_bad_options_are_clear_errors():
    with pytest.raises(InputError, match="has no option 'level'"):
        REGISTRY.get("laplacian").build("cpu", level=3)
    with pytest.raises(InputError, match="Unknown discrete wavelet"):
        REGISTRY.get("dwt").build("cpu", wavelet="nope")
    with pytest.raises(InputError, match="Unknown fusion method 'nope'"):
        REGISTRY.get("nope")
