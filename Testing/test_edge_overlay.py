"""The 3D edge overlay on real volumes: sparse, the same whatever slicing axis, continuous in every view, one
detail control; 2D pairs still get edges."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

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
