"""Cropping to the anatomy (anatomy_crop.py) gives the uncropped fusion to 1e-6, for every method, on real volumes."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from MedFusionLib import anatomy_crop
from MedFusionLib.engine import fuse_volumes
from MedFusionLib.methods import REGISTRY
from MedFusionLib.volume_io import read_volume

# Stroke slices 128-139: the top of the head, 7 slices with a shrinking brain then 5 empty ones (after the
# brain extraction), so one batch of 8 is cropped and the next one is skipped whole.
TOP = slice(128, 140)


@pytest.fixture(scope="module")
def stroke_top(stroke_dir):
    t1 = read_volume(stroke_dir / "T1.nii.gz")
    t2 = read_volume(stroke_dir / "T2.nii.gz")
    return t1[:, :, TOP], t2[:, :, TOP]


@pytest.fixture(scope="module")
def sts_slab(sts_dir):
    ct = read_volume(sts_dir / "CT.nii.gz")
    return ct[:, :, 2:6], read_volume(sts_dir / "PET.nii.gz"), read_volume(sts_dir / "MR_T1.nii.gz")


def _fused(a, b, method, crop, **kwargs):
    result = fuse_volumes(a, b, method=method, device="cpu", edges=False, precision="fp32", batch_size=8,
                          check_registration=False, crop_to_anatomy=crop, **kwargs)
    return sitk.GetArrayFromImage(result.fused).astype(np.float64)


def test_the_stroke_top_has_empty_slices_and_a_partial_bounding_box(stroke_top):
    """The data really exercise both paths (skipped slices, a cropped box), or the equality tests prove nothing."""
    t1 = sitk.GetArrayFromImage(stroke_top[0])
    per_slice = (t1 > 0).any(axis=(1, 2))
    assert per_slice[:5].all() and not per_slice[-4:].any()
    rows, cols = (t1 > 0).any(axis=(0, 2)), (t1 > 0).any(axis=(0, 1))
    margin = REGISTRY.get("mfenet").crop_margin
    assert rows.sum() + 4 * margin < rows.size and cols.sum() + 4 * margin < cols.size


@pytest.mark.parametrize("method", REGISTRY.names())
def test_cropped_equals_uncropped_on_the_stroke_volume(stroke_top, method):
    cropped, whole = _fused(*stroke_top, method, True), _fused(*stroke_top, method, False)
    assert np.abs(cropped - whole).max() <= 1e-6


@pytest.mark.parametrize("method", ["mfenet", "average", "gff"])
def test_cropped_equals_uncropped_on_sts_ct_with_mr_on_another_grid(sts_slab, method):
    """B resampled from another grid, with the field-of-view blend at its border."""
    ct, _, mr = sts_slab
    assert np.abs(_fused(ct, mr, method, True) - _fused(ct, mr, method, False)).max() <= 1e-6


def test_cropped_equals_uncropped_in_colour(sts_slab):
    """A functional source coloured (RGB output): the colour path composes the same fused luma."""
    ct, pet, _ = sts_slab
    kwargs = dict(colormap_b="hot", colour_mode="ycbcr")
    assert np.array_equal(_fused(ct, pet, "mfenet", True, **kwargs), _fused(ct, pet, "mfenet", False, **kwargs))


def _slabs(volume):
    array = sitk.GetArrayFromImage(volume).astype(np.float32)
    return array / array.max()


def test_the_network_runs_on_a_fraction_of_the_pixels(stroke_top):
    """On the top of the head MFEnet computes about three quarters of the pixels (the brain's box grown by twice
    its 11-pixel receptive field, plus one empty slice for the background); the output is the same."""
    import torch

    fuse = REGISTRY.get("mfenet").build(torch.device("cpu"))
    a, b = _slabs(stroke_top[0])[:8], _slabs(stroke_top[1])[:8]
    crop = anatomy_crop.AnatomyCrop(fuse, torch.device("cpu"), anatomy_crop.margin_for("mfenet"))
    with torch.inference_mode():
        cropped = crop(a, b)
        whole = fuse(torch.from_numpy(a).unsqueeze(1), torch.from_numpy(b).unsqueeze(1))
    assert crop.computed < 0.8 * crop.total
    assert float((cropped - whole).abs().max()) <= 1e-6


def test_only_local_methods_are_cropped():
    """Slice-wide statistics or size-dependent pyramids: only empty slices are skipped for them."""
    assert anatomy_crop.margin_for("mfenet", {"edge_weight": 1.0}) is None
    for method in ("pca", "laplacian", "dwt", "edpsn", "fusioncinn"):
        assert anatomy_crop.margin_for(method) is None
    assert anatomy_crop.margin_for("mfenet") == 11 and anatomy_crop.margin_for("average") == 0


def test_the_margin_is_declared_on_the_registry_entry_and_none_by_default():
    """A method whose entry declares no margin (a new network, say) is only spared its empty slices."""
    from MedFusionLib.methods.registry import MethodInfo

    undeclared = MethodInfo(name="x", title="X", kind="network", summary="", reference="", module="mfenet")
    assert undeclared.margin() is None
    for info in REGISTRY.infos():
        assert info.margin() == anatomy_crop.margin_for(info.name)
        assert info.margin() is None or info.margin() >= 0


def test_crop_to_anatomy_is_a_checked_setting():
    from MedFusionLib.errors import InputError
    from MedFusionLib.settings import FusionSettings

    assert FusionSettings.create().crop_to_anatomy is True
    assert FusionSettings.create(crop_to_anatomy=False).crop_to_anatomy is False
    with pytest.raises(InputError, match="crop_to_anatomy"):
        FusionSettings.create(crop_to_anatomy="no")
