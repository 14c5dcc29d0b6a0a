"""The 3D edge overlay on real volumes: sparse, the same whatever slicing axis, continuous in every view, one
detail control; 2D pairs still get edges."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from MedFusionLib import edge_overlay
from MedFusionLib.edge_overlay import FOREGROUND_LEVEL
from MedFusionLib.edges import canny_edges
from MedFusionLib.engine import fuse_volumes
from MedFusionLib.errors import InputError

QUICK = dict(method="average", check_registration=False)  # the edges do not depend on either


@pytest.fixture(scope="module")
def stroke(stroke_dir):
    return [sitk.ReadImage(str(stroke_dir / f"{n}.nii.gz")) for n in ("T1", "T2")]


@pytest.fixture(scope="module")
def sts(sts_dir):
    return [sitk.ReadImage(str(sts_dir / f"{n}.nii.gz")) for n in ("CT", "MR_T1")]


def _edges_and_foreground(a, b, **options):
    result = fuse_volumes(a, b, return_sources=True, **QUICK, **options)
    sources = [sitk.GetArrayFromImage(s) for s in result.sources]
    return sitk.GetArrayFromImage(result.edges), (sources[0] > FOREGROUND_LEVEL) | (sources[1] > FOREGROUND_LEVEL)


@pytest.mark.parametrize("pair,presets", [("stroke", ("auto", "auto")), ("sts", ("auto", "auto")),
                                          ("sts", ("ct:soft", "mr"))])
def test_default_edges_are_sparse(pair, presets, request):
    """By default at most 8% of the foreground (either source above 0.02) is outlined."""
    a, b = request.getfixturevalue(pair)
    labels, foreground = _edges_and_foreground(a, b, preset_a=presets[0], preset_b=presets[1])
    share = np.count_nonzero(labels[foreground]) / np.count_nonzero(foreground)
    assert 0.01 < share <= 0.08
    assert {1, 2} <= set(np.unique(labels))


def test_edges_are_the_same_whatever_slicing_axis(sts):
    """sts_001: B on another grid and partly outside A; axial and coronal fusion give one overlay."""
    axial = sitk.GetArrayFromImage(fuse_volumes(*sts, axis="axial", **QUICK).edges)
    coronal = sitk.GetArrayFromImage(fuse_volumes(*sts, axis="coronal", **QUICK).edges)
    assert np.mean(axial == coronal) >= 0.99
    either = (axial > 0) | (coronal > 0)
    assert np.mean(axial[either] == coronal[either]) >= 0.99  # and on the edges themselves, not just background


def _isolated_share(labels: np.ndarray, axis: int) -> float:
    """Share of edge pixels with no edge among their 8 in-plane neighbours, in the planes normal to ``axis``."""
    edges = np.moveaxis(labels > 0, axis, 0)
    padded = np.pad(edges, ((0, 0), (1, 1), (1, 1)))
    neighbours = sum(padded[:, 1 + dy: padded.shape[1] - 1 + dy, 1 + dx: padded.shape[2] - 1 + dx]
                     for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))
    return float(np.mean(neighbours[edges] == 0))


def test_outlines_are_continuous_in_every_view(stroke):
    """Per-slice Canny draws dashes in the other views; 3D edges are curves in all three."""
    labels = sitk.GetArrayFromImage(fuse_volumes(*stroke, **QUICK).edges)
    for axis in range(3):
        assert _isolated_share(labels, axis) < 0.01  # measured 0.12-0.16%
    # The old per-slice overlay, as a yardstick: its edges, seen across the slices, break up.
    t1 = sitk.GetArrayFromImage(stroke[0]).astype(np.float32) / 255.0
    per_slice = canny_edges(t1).astype(bool)
    seen_across = max(_isolated_share(per_slice, axis) for axis in (1, 2))
    assert seen_across > 2 * max(_isolated_share(labels, axis) for axis in range(3))


def test_detail_asks_for_fewer_or_more_edges(sts):
    counts = [np.count_nonzero(sitk.GetArrayFromImage(fuse_volumes(*sts, edge_detail=d, **QUICK).edges))
              for d in (0.0, 0.5, 1.0)]
    assert counts[0] < counts[1] < counts[2]
    assert counts[2] > 2 * counts[0]
    for bad in (1.5, -0.1, "lots"):
        with pytest.raises(InputError, match="Edge detail"):
            fuse_volumes(*sts, edge_detail=bad, **QUICK)


def test_2d_pair_gets_edges_of_both(harvard_dir):
    ct = sitk.ReadImage(str(harvard_dir / "CT-MRI" / "CT" / "2004.png"))
    mri = sitk.ReadImage(str(harvard_dir / "CT-MRI" / "MRI" / "2004.png"))
    result = fuse_volumes(ct, mri, return_sources=True, **QUICK)
    labels = sitk.GetArrayFromImage(result.edges)
    assert labels.shape == sitk.GetArrayFromImage(ct).shape
    assert {1, 2} <= set(np.unique(labels))
    sources = [sitk.GetArrayFromImage(s) for s in result.sources]
    foreground = (sources[0] > FOREGROUND_LEVEL) | (sources[1] > FOREGROUND_LEVEL)
    assert np.count_nonzero(labels[foreground]) / np.count_nonzero(foreground) <= 0.15


# ------------------------------------------------------------------ B's field of view, and the blocked computation
def _field_of_view(moving, reference):
    """B's field of view on A's grid as a voxel mask (nearest-neighbour resampling of ones), for the checks."""
    ones = sitk.Image(moving.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(moving)
    return sitk.GetArrayFromImage(sitk.Resample(ones, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0)) > 0


def _oblique(image, angles=(0.2, -0.1, 0.3)):
    rotation = sitk.Euler3DTransform()
    rotation.SetRotation(*angles)
    turned = sitk.Image(image)
    turned.SetDirection(tuple((np.asarray(rotation.GetMatrix()).reshape(3, 3)
                               @ np.asarray(image.GetDirection()).reshape(3, 3)).ravel()))
    return turned


@pytest.mark.parametrize("crop", ["as read", "cropped", "cropped, oblique"])
def test_b_edge_region_keeps_a_margin_from_where_b_is_cut(sts, crop):
    """Inside B's field of view, more than 2 sigma + one voxel (mm) from every A voxel outside it, and not
    more conservative than that by more than a voxel; faces at A's own border are not cuts."""
    ct, mr = sts
    b = {"as read": mr, "cropped": mr[20:150, 10:140, 5:50], "cropped, oblique": _oblique(mr[20:150, 10:140, 5:50])}[crop]
    rows = edge_overlay.b_edge_region(b, ct, 0.5)
    region = rows(slice(0, ct.GetSize()[2]))
    inside = _field_of_view(b, ct)
    outside = sitk.GetImageFromArray((~inside).astype(np.uint8))
    outside.CopyInformation(ct)
    distance = sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(outside, insideIsPositive=False,
                                                                   squaredDistance=False, useImageSpacing=True))
    margin = 2.0 * edge_overlay.sigma_mm(0.5) + max(ct.GetSpacing())
    diagonal = float(np.linalg.norm(ct.GetSpacing()))
    assert not (region & ~inside).any()
    assert distance[region].min() > margin - 1e-3  # from the outside voxels' centres
    # Exact up to a voxel for faces parallel to A's axes; a tilted face's plane can pass near A's border
    # where the face itself is outside A, and insets a little more there (measured: 0.02% of these voxels).
    assert region[distance > margin + diagonal].mean() > (0.999 if "oblique" in crop else 1.0 - 1e-9)
    assert 0.1 < region.mean() < inside.mean()
    if crop == "as read":  # the MR spans all of the CT's slices: its first and last slice hold edges
        assert region[0].any() and region[-1].any()


def test_b_edge_region_is_none_when_b_holds_all_of_a(stroke, sts):
    assert edge_overlay.b_edge_region(stroke[1], stroke[0]) is None
    assert edge_overlay.b_edge_region(sts[0], sts[0]) is None


def test_b_edges_stay_in_the_region_in_the_overlay(sts):
    ct, mr = sts
    crop = mr[20:150, 10:140, 5:50]
    labels = sitk.GetArrayFromImage(fuse_volumes(ct, crop, **QUICK).edges)
    region = edge_overlay.b_edge_region(crop, ct)(slice(0, labels.shape[0]))
    of_b = (labels & 2) > 0
    assert of_b.sum() > 1000
    assert not (of_b & ~region).any()
    assert ((labels & 1) > 0)[~region].any()  # A's edges are not limited by B


def test_suppression_in_sub_blocks_equals_one_block(stroke, monkeypatch):
    """The suppression runs in sub-blocks of each smoothed block: their bookkeeping (one neighbour row each
    side) gives bit-identical magnitudes to one sub-block a block."""
    t1 = sitk.GetArrayFromImage(stroke[0]).astype(np.float32) / 255.0
    spacing = stroke[0].GetSpacing()[::-1]
    sigma = edge_overlay.sigma_mm(0.5)
    per_slice = t1.shape[1] * t1.shape[2]
    halo = int(np.ceil(4.0 * sigma / spacing[0])) + 1
    monkeypatch.setattr(edge_overlay, "_CHUNK_VOXELS", 4 * halo * per_slice)  # one sub-block a block
    whole = edge_overlay.suppressed_magnitude(t1, spacing, sigma)
    monkeypatch.setattr(edge_overlay, "_CHUNK_VOXELS", 1)  # sub-blocks of 8 rows, same blocks
    parts = edge_overlay.suppressed_magnitude(t1, spacing, sigma)
    assert t1.shape[0] > 4 * halo  # several blocks, several sub-blocks each
    assert (whole > 0).mean() > 0.01
    np.testing.assert_array_equal(parts, whole)
