"""Geometry on real volumes: output grids, physical-space resampling, overlap, anatomical slicing axes."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from MedFusionLib.engine import fuse_volumes
from MedFusionLib.errors import InputError
from MedFusionLib.geometry import (fields_of_view_may_overlap, index_to_physical_axes, resample_onto,
                                    slice_array_axis, slice_layout)
from MedFusionLib.intensity import apply_window, choose_window


def _read(folder, name):
    return sitk.ReadImage(str(folder / name))


def _assert_same_geometry(image, reference):
    assert image.GetSize() == reference.GetSize()
    assert image.GetOrigin() == reference.GetOrigin()
    assert image.GetSpacing() == reference.GetSpacing()
    assert image.GetDirection() == reference.GetDirection()


@pytest.fixture(scope="module")
def sts(sts_dir):
    return {name: _read(sts_dir, f"{name}.nii.gz") for name in ("CT", "MR_T1", "PET")}


@pytest.mark.parametrize("second,preset", [("MR_T1", "mr"), ("PET", "pet")])
def test_output_grid_is_the_ct_grid_exactly(sts, second, preset):
    result = fuse_volumes(sts["CT"], sts[second], method="average", preset_a="ct:soft", preset_b=preset)
    _assert_same_geometry(result.fused, sts["CT"])
    _assert_same_geometry(result.edges, sts["CT"])
    assert result.fused.GetPixelID() == sitk.sitkFloat32
    values = sitk.GetArrayViewFromImage(result.fused)
    assert 0.0 <= values.min() and values.max() <= 1.0


@pytest.mark.parametrize("second,preset", [("MR_T1", "mr"), ("PET", "pet")])
def test_resampled_second_volume_matches_an_independent_simpleitk_resample(sts, second, preset):
    ct, other = sts["CT"], sts[second]
    # B resampled onto A's grid, as the engine returns it (the fused image fades to A at B's border).
    result = fuse_volumes(ct, other, method="average", preset_a="ct:soft", preset_b=preset, edges=False,
                          return_sources=True)
    b_engine = sitk.GetArrayFromImage(result.sources[1])

    # Independent: a ResampleImageFilter configured field by field from the CT's grid, on the raw values,
    # then B's own window (computed on its own grid), and 0 outside its field of view.
    resampler = sitk.ResampleImageFilter()
    resampler.SetOutputOrigin(ct.GetOrigin())
    resampler.SetOutputSpacing(ct.GetSpacing())
    resampler.SetOutputDirection(ct.GetDirection())
    resampler.SetSize(ct.GetSize())
    resampler.SetInterpolator(sitk.sitkLinear)
    resampler.SetOutputPixelType(sitk.sitkFloat32)
    resampler.SetDefaultPixelValue(np.nan)
    raw = sitk.GetArrayFromImage(resampler.Execute(other))
    other_array = sitk.GetArrayFromImage(other)
    b_independent = np.where(np.isnan(raw), 0.0, apply_window(raw, choose_window(other_array, preset))[0])
    np.testing.assert_allclose(b_engine, b_independent, atol=2e-6)


def _trilinear(array_kji, continuous_ijk):
    """Textbook trilinear interpolation of a [k, j, i] array at a continuous (i, j, k) index."""
    base = np.floor(continuous_ijk).astype(int)
    frac = continuous_ijk - base
    total = 0.0
    for di in (0, 1):
        for dj in (0, 1):
            for dk in (0, 1):
                weight = ((frac[0] if di else 1 - frac[0]) * (frac[1] if dj else 1 - frac[1])
                          * (frac[2] if dk else 1 - frac[2]))
                total += weight * array_kji[base[2] + dk, base[1] + dj, base[0] + di]
    return total


def test_resampling_follows_physical_space_by_hand(sts):
    """Voxel centres of the CT mapped to MR continuous indices with numpy matrices, interpolated by hand."""
    ct, mr = sts["CT"], sts["MR_T1"]
    moved = sitk.GetArrayFromImage(resample_onto(sitk.Cast(mr, sitk.sitkFloat32), ct, -1.0))
    mr_array = sitk.GetArrayFromImage(mr).astype(np.float64)
    ct_matrix = np.array(ct.GetDirection()).reshape(3, 3) @ np.diag(ct.GetSpacing())
    mr_matrix = np.array(mr.GetDirection()).reshape(3, 3) @ np.diag(mr.GetSpacing())
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(400):
        ijk = rng.integers(0, ct.GetSize())
        physical = np.array(ct.GetOrigin()) + ct_matrix @ ijk
        continuous = np.linalg.solve(mr_matrix, physical - np.array(mr.GetOrigin()))
        if np.all(continuous >= 0) and np.all(continuous <= np.array(mr.GetSize()) - 1.001):
            expected = _trilinear(mr_array, continuous)
            assert moved[ijk[2], ijk[1], ijk[0]] == pytest.approx(expected, rel=1e-4, abs=1e-3)
            checked += 1
        elif np.any(continuous < -0.5) or np.any(continuous > np.array(mr.GetSize()) - 0.5):
            assert moved[ijk[2], ijk[1], ijk[0]] == -1.0  # outside the MR's field of view
    assert checked > 100


def test_overlap_is_reported_and_matches_the_field_of_view(sts):
    ct, mr = sts["CT"], sts["MR_T1"]
    result = fuse_volumes(ct, mr, method="average", preset_a="ct", preset_b="mr", edges=False)
    # Independent estimate: CT voxel centres whose MR continuous index lies inside [-0.5, size - 0.5].
    k, j, i = np.meshgrid(*(np.arange(n) for n in ct.GetSize()[::-1]), indexing="ij")
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel()])
    physical = np.array(ct.GetOrigin())[:, None] + (np.array(ct.GetDirection()).reshape(3, 3)
                                                     @ np.diag(ct.GetSpacing()) @ ijk)
    mr_matrix = np.array(mr.GetDirection()).reshape(3, 3) @ np.diag(mr.GetSpacing())
    continuous = np.linalg.solve(mr_matrix, physical - np.array(mr.GetOrigin())[:, None])
    inside = np.all((continuous >= -0.5) & (continuous <= np.array(mr.GetSize())[:, None] - 0.5), axis=0)
    assert result.overlap == pytest.approx(inside.mean(), abs=2e-3)
    assert 0.5 < result.overlap < 0.9  # the MR covers only part of the CT (shared data README)
    assert any("field of view" in w for w in result.warnings)


def test_no_physical_overlap_is_an_error(sts):
    moved = sitk.Image(sts["MR_T1"])
    moved.SetOrigin([c + 5000.0 for c in moved.GetOrigin()])
    with pytest.raises(InputError, match="do not overlap"):
        fuse_volumes(sts["CT"], moved, method="average")


# --- Anatomical slicing axes on the oblique stroke volumes -------------------------------------------------

@pytest.fixture(scope="module")
def stroke(stroke_dir):
    return {name: _read(stroke_dir, f"{name}.nii.gz") for name in ("T1", "T2")}


def test_oblique_direction_maps_index_axes_to_anatomy(stroke):
    t1 = stroke["T1"]
    direction = np.array(t1.GetDirection()).reshape(3, 3)
    assert not np.allclose(np.abs(direction), np.eye(3), atol=0.05)  # really oblique
    # Columns of the direction matrix: i runs mostly L-R, j mostly A-P, k mostly S-I.
    assert index_to_physical_axes(t1) == (0, 1, 2)
    assert [slice_array_axis(t1, a) for a in ("axial", "coronal", "sagittal")] == [0, 1, 2]


@pytest.mark.parametrize("order", [(2, 0, 1), (1, 2, 0), (1, 0, 2)])
def test_axis_choice_follows_anatomy_not_array_index(stroke, order):
    """Permuting the storage order of the voxels must not change which physical slices are fused."""
    # A block of the real volumes keeps their oblique geometry and the test fast.
    t1, t2 = stroke["T1"][20:100, 30:130, 40:110], stroke["T2"][20:100, 30:130, 40:110]
    t1_permuted = sitk.PermuteAxes(t1, order)
    t2_permuted = sitk.PermuteAxes(t2, order)
    axes = ("axial", "coronal", "sagittal")
    assert [slice_array_axis(t1_permuted, x) for x in axes] != [slice_array_axis(t1, x) for x in axes]
    for axis in axes:
        # The Laplacian pyramid mixes pixels within a slice only: the result depends on the slicing plane.
        plain = fuse_volumes(t1, t2, method="laplacian", axis=axis, preset_a="mr", preset_b="mr", edges=False)
        permuted = fuse_volumes(t1_permuted, t2_permuted, method="laplacian", axis=axis, preset_a="mr",
                                preset_b="mr", edges=False)
        _assert_same_geometry(permuted.fused, t1_permuted)
        # Undo the permutation (a pure relabelling of voxels) and compare voxel by voxel.
        back = sitk.PermuteAxes(permuted.fused, [order.index(n) for n in range(3)])
        np.testing.assert_allclose(back.GetOrigin(), t1.GetOrigin(), atol=1e-6)
        np.testing.assert_allclose(back.GetDirection(), t1.GetDirection(), atol=1e-9)
        # Slices reach the method in one anatomical orientation, so the result is identical, not just close.
        np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(plain.fused))
    # And the plane matters: axial and coronal fusions of the same data differ.
    axial = fuse_volumes(t1, t2, method="laplacian", axis="axial", edges=False)
    coronal = fuse_volumes(t1, t2, method="laplacian", axis="coronal", edges=False)
    assert np.abs(sitk.GetArrayFromImage(axial.fused) - sitk.GetArrayFromImage(coronal.fused)).max() > 0.05


def test_unknown_axis_is_an_error(stroke):
    with pytest.raises(InputError, match="axial, coronal or sagittal"):
        fuse_volumes(stroke["T1"], stroke["T2"], axis="oblique")


def test_slices_reach_methods_in_radiological_orientation(stroke):
    """Flipping the storage order of an axis (with a matching direction) leaves the slices unchanged."""
    t1 = stroke["T1"]
    flipped = sitk.Flip(t1, [True, False, True])  # keeps physical positions, reverses i and k storage
    for axis in ("axial", "coronal", "sagittal"):
        plain = slice_layout(t1, axis).to_slices(sitk.GetArrayFromImage(t1))
        other = slice_layout(flipped, axis).to_slices(sitk.GetArrayFromImage(flipped))
        assert plain.shape == other.shape
        # Same anatomical slice set; the stack order may run the other way.
        same = np.array_equal(plain, other) or np.array_equal(plain, other[::-1])
        assert same, axis
    layout = slice_layout(t1, "coronal")
    array = sitk.GetArrayFromImage(t1)
    np.testing.assert_array_equal(layout.from_slices(layout.to_slices(array)), array)


def _grid(size, origin=(0.0, 0.0, 0.0), rotation_deg=0.0):
    image = sitk.GetImageFromArray(np.arange(np.prod(size), dtype=np.float32).reshape(size[::-1]))
    c, s = np.cos(np.radians(rotation_deg)), np.sin(np.radians(rotation_deg))
    image.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
    image.SetOrigin(origin)
    return image


def test_fields_of_view_test_is_exact_on_disjoint_and_touching_grids():
    a = _grid((10, 10, 10))
    assert fields_of_view_may_overlap(a, _grid((10, 10, 10), origin=(5.0, 5.0, 5.0)))
    assert not fields_of_view_may_overlap(a, _grid((10, 10, 10), origin=(10.6, 0.0, 0.0)))
    assert fields_of_view_may_overlap(a, _grid((10, 10, 10), origin=(9.9, 0.0, 0.0)))  # half a voxel still counts


def test_oblique_near_miss_is_found_by_the_exact_overlap():
    """A diamond beside A's corner: its bounding box meets A, none of its voxels do."""
    a = _grid((10, 10, 10))
    # 45 degrees about S, centred at (15.5, 15.5): |x - 15.5| + |y - 15.5| <= 7.07 never reaches (9.5, 9.5).
    b = _grid((10, 10, 10), rotation_deg=45.0)
    centre_offset = np.array(b.TransformContinuousIndexToPhysicalPoint((4.5, 4.5, 4.5))) - np.array(b.GetOrigin())
    b.SetOrigin(tuple(np.array([15.5, 15.5, 4.5]) - centre_offset))
    assert fields_of_view_may_overlap(a, b)
    with pytest.raises(InputError, match="do not overlap"):
        fuse_volumes(a, b, method="average")
