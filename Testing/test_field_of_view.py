"""Field-of-view aware fusion (issue 13, deliverable 1): where only A has data, A passes through unchanged.

On sts_001 the MR covers ~69% of the CT. Every registered method, grey and colour: outside B's field of view
the fused image is A's normalised image (mean |fused - A| < 1/255), and the step across the border is A's own.
Measured before the change (4 central slices): outside error 5-21/255 (EDPSN 5, GFF 12, MFEnet 19, average 21),
border step 43-96/255 against A's 10.9/255.
"""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from MedFusionLib.engine import fuse_volumes
from MedFusionLib.evaluation.seams import field_of_view_mask, seam_figures
from MedFusionLib.field_of_view import RAMP_VOXELS, border_weight
from MedFusionLib.methods import REGISTRY

STEP_TOLERANCE = 0.5 / 255  # on top of A's own step: rounding-level differences only


@pytest.fixture(scope="module")
def sts(sts_dir):
    ct = sitk.ReadImage(str(sts_dir / "CT.nii.gz"))
    return (ct[:, :, 27:31], sitk.ReadImage(str(sts_dir / "MR_T1.nii.gz")),
            sitk.ReadImage(str(sts_dir / "PET.nii.gz")))


def _figures(result, inside):
    fused = sitk.GetArrayFromImage(result.fused)
    if fused.ndim == inside.ndim + 1:  # RGB: compare its BT.601 luma with A
        from MedFusionLib.colour import luminance

        fused = luminance(fused.astype(np.float32) / 255.0)
    return seam_figures(fused, sitk.GetArrayFromImage(result.sources[0]), inside)


@pytest.mark.parametrize("method", REGISTRY.names())
def test_outside_the_mr_every_method_returns_the_ct_unchanged_without_a_seam(sts, method):
    ct, mr, _ = sts
    inside = field_of_view_mask(mr, ct)
    assert 0.5 < inside.mean() < 0.9  # the MR covers part of the CT only
    result = fuse_volumes(ct, mr, method=method, preset_a="ct:soft", preset_b="mr", edges=False,
                          return_sources=True, device="cpu")
    figures = _figures(result, inside)
    assert figures["outside_error"] < 1.0 / 255, figures
    assert figures["border_step"] <= figures["border_step_a"] + STEP_TOLERANCE, figures
    # Where the fusion fades in, steps stay within A's own or the fused image's texture further inside.
    assert figures["ring_step"] <= max(figures["ring_step_a"], figures["interior_step"]) + STEP_TOLERANCE, figures


@pytest.mark.parametrize("method, mode", [(m, "overlay") for m in REGISTRY.names()] + [("gff", "ycbcr")])
def test_colour_pet_outside_its_field_of_view_shows_the_grey_ct(sts, method, mode):
    ct, _, pet = sts
    pet_part = pet[8:34, 6:36, :]  # a PET cut to part of the CT (physical geometry kept)
    inside = field_of_view_mask(pet_part, ct)
    assert 0.2 < inside.mean() < 0.8
    result = fuse_volumes(ct, pet_part, method=method, preset_a="ct:soft", preset_b="pet", colormap_b="hot",
                          colour_mode=mode, edges=False, return_sources=True, device="cpu")
    assert result.colour_mode == mode
    rgb = sitk.GetArrayFromImage(result.fused).astype(np.int16)
    expected = np.rint(sitk.GetArrayFromImage(result.sources[0]) * 255)
    outside = ~inside
    for channel in range(3):  # untinted grey CT: R = G = B = A, to 8-bit rounding
        assert np.abs(rgb[..., channel][outside] - expected[outside]).max() <= 1
    figures = _figures(result, inside)
    assert figures["border_step"] <= figures["border_step_a"] + 1.0 / 255, figures


def test_the_weight_is_zero_outside_one_inside_and_the_same_along_any_slicing_axis(sts):
    ct, mr, _ = sts
    weight = border_weight(ct, mr, ct)
    inside = field_of_view_mask(mr, ct)
    assert weight.shape == inside.shape and weight.dtype == np.float32
    assert np.all(weight[~inside] == 0.0)
    assert weight.min() == 0.0 and weight.max() == 1.0 and (weight == 1.0).mean() > 0.4
    # The fade-in spans RAMP_VOXELS voxels of A: the left half of a row across the MR's left border (x = 24).
    row = weight[1, 100, :100]
    ramp = np.nonzero((row > 0) & (row < 1))[0]
    assert RAMP_VOXELS - 1 <= ramp.size <= RAMP_VOXELS + 1 and np.all(np.diff(row[ramp]) > 0)
    # Slicing coronally fuses the same A outside the field of view.
    result = fuse_volumes(ct, mr, method="average", axis="coronal", preset_a="ct:soft", preset_b="mr",
                          edges=False, return_sources=True, device="cpu")
    assert _figures(result, inside)["outside_error"] < 1.0 / 255


def test_where_b_is_masked_with_nan_a_passes_unchanged(sts):
    ct, mr, _ = sts
    masked = sitk.GetArrayFromImage(mr)
    masked[:, 40:110, 50:120] = np.nan  # a masked-out block inside the MR's field of view
    masked_mr = sitk.GetImageFromArray(masked)
    masked_mr.CopyInformation(mr)
    result = fuse_volumes(ct, masked_mr, method="laplacian", preset_a="ct:soft", preset_b="mr", edges=False,
                          return_sources=True, device="cpu")
    fused = sitk.GetArrayFromImage(result.fused)
    reference = sitk.GetArrayFromImage(result.sources[0])
    no_data = field_of_view_mask(mr, ct) & (sitk.GetArrayFromImage(result.sources[1]) == 0.0)
    nan_block = sitk.GetImageFromArray(np.isnan(masked).astype(np.uint8))
    nan_block.CopyInformation(mr)
    block = sitk.GetArrayFromImage(sitk.Resample(nan_block, ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    assert block.sum() > 10000
    np.testing.assert_allclose(fused[block > 0], reference[block > 0], atol=1.0 / 255)
    assert no_data[block > 0].all()


@pytest.mark.parametrize("turn", [(0.0, 0.0, 0.0), (0.2, -0.1, 0.3)])
def test_the_weight_is_the_distance_inside_b_voxel_by_voxel(sts, turn):
    """border_weight against a voxel-by-voxel computation through SimpleITK's own index <-> point maps, for B
    parallel to A (the weight is then summed over one index axis per B axis) and for B turned (all three)."""
    ct, mr, _ = sts
    b = sitk.Image(mr[20:150, 10:140, 5:50])
    rotation = sitk.Euler3DTransform()
    rotation.SetRotation(*turn)
    b.SetDirection(tuple((np.asarray(rotation.GetMatrix()).reshape(3, 3)
                          @ np.asarray(b.GetDirection()).reshape(3, 3)).ravel()))
    grid = ct[:, :, 1:4]  # a sub-grid of A: the weight uses A's own indices
    weight = border_weight(grid, b, ct)
    ramp_mm = RAMP_VOXELS * np.abs(np.asarray(b.GetDirection()).reshape(3, 3).T
                                   @ (np.asarray(ct.GetDirection()).reshape(3, 3) @ np.diag(ct.GetSpacing()))).max(axis=1)
    generator = np.random.default_rng(0)
    for z, y, x in zip(generator.integers(0, 3, 400), generator.integers(0, 202, 400), generator.integers(0, 198, 400)):
        point = grid.TransformIndexToPhysicalPoint((int(x), int(y), int(z)))
        index = np.asarray(b.TransformPhysicalPointToContinuousIndex(point))
        inside_mm = np.minimum(index, np.asarray(b.GetSize()) - 1.0 - index) * np.asarray(b.GetSpacing())
        expected = float(np.clip(inside_mm / ramp_mm, 0.0, 1.0).min())
        assert weight[z, y, x] == pytest.approx(expected, abs=1e-5), (x, y, z)
    assert 0.0 < weight.mean() < 1.0
