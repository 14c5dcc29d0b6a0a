"""The engine: progress, cancel, determinism, untouched inputs, colour path, edges, API-level bad inputs."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from MedFusionLib.engine import fuse_volumes
from MedFusionLib.errors import Cancelled, InputError
from MedFusionLib.phantom import make_head_phantom


@pytest.fixture(scope="module")
def phantom():
    return make_head_phantom(scale=0.35)


@pytest.fixture(scope="module")
def sts(sts_dir):
    return {n: sitk.ReadImage(str(sts_dir / f"{n}.nii.gz")) for n in ("CT", "MR_T1", "PET")}


def test_progress_reaches_the_total_in_batches(phantom):
    calls = []
    result = fuse_volumes(phantom["ct"], phantom["mr"], method="average", batch_size=7,
                          progress=lambda done, total: calls.append((done, total)))
    total = result.slices
    assert calls[-1] == (total, total)
    assert [d for d, _ in calls] == sorted({min(total, 7 * (n + 1)) for n in range(len(calls))})


def test_cancel_midway_raises_and_returns_nothing(phantom):
    polls = []

    def cancel():
        polls.append(1)
        return len(polls) > 2  # let two batches run, then cancel

    with pytest.raises(Cancelled, match="cancelled"):
        fuse_volumes(phantom["ct"], phantom["mr"], method="laplacian", batch_size=4, cancel=cancel)
    assert len(polls) == 3


def test_deterministic_and_inputs_untouched(sts):
    ct, mr = sts["CT"], sts["MR_T1"]
    before = (sitk.GetArrayFromImage(ct).copy(), sitk.GetArrayFromImage(mr).copy(), mr.GetOrigin())
    first = fuse_volumes(ct, mr, method="gff", preset_a="ct:soft", preset_b="mr")
    second = fuse_volumes(ct, mr, method="gff", preset_a="ct:soft", preset_b="mr", batch_size=3)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(first.fused), sitk.GetArrayFromImage(second.fused))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(first.edges), sitk.GetArrayFromImage(second.edges))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ct), before[0])
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mr), before[1])
    assert mr.GetOrigin() == before[2]


def test_colour_source_gives_rgb_in_the_reference_geometry(harvard_dir):
    mri = sitk.ReadImage(str(harvard_dir / "SPECT-MRI" / "MRI" / "11005.png"))
    spect = sitk.ReadImage(str(harvard_dir / "SPECT-MRI" / "SPECT" / "11005.png"))
    result = fuse_volumes(mri, spect, method="average")
    assert result.colour_source == "B"
    assert result.fused.GetNumberOfComponentsPerPixel() == 3 and result.fused.GetPixelID() == sitk.sitkVectorUInt8
    # Only Y is fused: the SPECT's chroma (Cb, Cr) comes back, except where the new Y pushes a saturated
    # colour out of the RGB gamut and clipping shifts it (a property of the YCbCr scheme, rare).
    from MedFusionLib.colour import rgb_to_ycbcr

    rgb = sitk.GetArrayFromImage(spect).astype(np.float32) / 255
    fused = sitk.GetArrayFromImage(result.fused).astype(np.float32) / 255
    bright = rgb_to_ycbcr(rgb)[..., 0] > 0.3
    chroma_error = np.abs(rgb_to_ycbcr(fused)[..., 1:][bright] - rgb_to_ycbcr(rgb)[..., 1:][bright]).max(axis=-1)
    assert np.mean(chroma_error < 0.03) > 0.99
    assert np.median(chroma_error) < 0.005


def test_grey_image_stored_as_rgb_is_treated_as_grey(harvard_dir):
    mri = sitk.ReadImage(str(harvard_dir / "CT-MRI" / "MRI" / "2004.png"))
    grey_rgb = sitk.Compose([mri, mri, mri])
    result = fuse_volumes(sitk.ReadImage(str(harvard_dir / "CT-MRI" / "CT" / "2004.png")), grey_rgb)
    assert result.colour_source is None and result.fused.GetNumberOfComponentsPerPixel() == 1


def test_both_colour_is_an_error(harvard_dir):
    pet = sitk.ReadImage(str(harvard_dir / "PET-MRI" / "PET" / "25015.png"))
    with pytest.raises(InputError, match="both colour"):
        fuse_volumes(pet, pet)


def test_nan_voxels_are_background_with_a_warning(phantom):
    mr = sitk.Cast(phantom["mr"], sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(mr)
    array[:3] = np.nan
    holes = sitk.GetImageFromArray(array)
    holes.CopyInformation(mr)
    result = fuse_volumes(phantom["ct"], holes, method="average", edges=False)
    assert np.isfinite(sitk.GetArrayViewFromImage(result.fused)).all()
    assert any("NaN or infinite" in w for w in result.warnings)


@pytest.mark.parametrize("make,message", [
    (lambda p: (p["ct"], None), "missing"),
    (lambda p: (p["ct"], sitk.GetImageFromArray(np.zeros((0, 5, 5), np.float32))), "is empty"),
    (lambda p: (p["ct"], sitk.GetImageFromArray(np.zeros((4, 5, 5, 4), np.float32), isVector=True)),
     "4 components"),
    (lambda p: (p["ct"], sitk.GetImageFromArray(np.ones((6, 5), np.float32))), "2D image"),
])
def test_api_bad_inputs(phantom, make, message):
    a, b = make(phantom)
    with pytest.raises(InputError, match=message):
        fuse_volumes(a, b)


def test_edge_labels_follow_the_sources():
    """A square in A and a disc in B: their outlines carry labels 1 and 2, crossings 3.

    Fixed thresholds: the automatic ones outline a share of each source's foreground (3%), less than a disc
    this small is outline (14%), so they would keep only its strongest arcs."""
    yy, xx = np.mgrid[:64, :64]
    a = np.zeros((64, 64), np.float32)
    a[16:48, 16:48] = 0.8
    b = ((yy - 32) ** 2 + (xx - 40) ** 2 < 14 ** 2).astype(np.float32) * 0.6
    result = fuse_volumes(sitk.GetImageFromArray(a), sitk.GetImageFromArray(b), method="max",
                          edge_thresholds=(0.02, 0.05))
    labels = sitk.GetArrayFromImage(result.edges)
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    assert labels[32, 15:18].max() in (1, 3)  # left side of the square
    assert labels[32, 53:56].max() in (2, 3)  # right side of the disc
    assert labels[5, 5] == 0 and labels[32, 40] == 0  # far from any boundary


def test_given_thresholds_control_the_edges(stroke_dir):
    """Thresholds are now those of the 3D overlay: normalised intensity per mm of the smoothed source."""
    t1, t2 = (sitk.ReadImage(str(stroke_dir / f"{n}.nii.gz"))[:, :, 60:76] for n in ("T1", "T2"))
    loose = sitk.GetArrayFromImage(fuse_volumes(t1, t2, edge_thresholds=(0.01, 0.02)).edges) > 0
    strict = sitk.GetArrayFromImage(fuse_volumes(t1, t2, edge_thresholds=(0.08, 0.16)).edges) > 0
    assert loose.sum() > 2 * strict.sum() > 0
    with pytest.raises(InputError):
        fuse_volumes(t1, t2, edge_thresholds=(5, 1))


def test_field_of_view_border_is_not_an_edge_of_b(sts):
    """The MR stops inside the CT: that cut is not anatomy and must not be outlined as an MR edge."""
    result = fuse_volumes(sts["CT"], sts["MR_T1"], method="average", preset_a="ct:soft", preset_b="mr")
    labels = sitk.GetArrayFromImage(result.edges)
    mr = sitk.Cast(sts["MR_T1"], sitk.sitkFloat32) * 0 + 1
    inside = sitk.GetArrayFromImage(sitk.Resample(mr, sts["CT"], sitk.Transform(), sitk.sitkNearestNeighbor, 0.0)) > 0
    import cv2

    border = np.stack([cv2.dilate(s.astype(np.uint8), np.ones((3, 3), np.uint8)) - s.astype(np.uint8)
                       for s in inside]) > 0
    b_edges_on_border = np.isin(labels[border], (2, 3)).mean()
    assert b_edges_on_border < 0.02
