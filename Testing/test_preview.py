"""Previews people read (issue 13, deliverable 6): orientation letters, which input is which, the slice shown
selectable, an edges column only with edges, a 2D pair shown once."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from MedFusionLib.cli import main
from MedFusionLib.engine import fuse_volumes
from MedFusionLib.errors import InputError
from MedFusionLib.preview import ORIENTATION_LETTERS, check_slices, parse_slices, preview_figure


@pytest.fixture(scope="module")
def ct_mr(sts_dir):
    ct = sitk.ReadImage(str(sts_dir / "CT.nii.gz"))[40:140, 50:150, 26:30]
    return ct, sitk.ReadImage(str(sts_dir / "MR_T1.nii.gz"))


def _texts(ax):
    return {t.get_text() for t in ax.texts}


def _close(fig):
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_volume_preview_says_which_is_which_with_orientation_letters_and_no_edges_column(ct_mr):
    ct, mr = ct_mr
    result = fuse_volumes(ct, mr, method="laplacian", preset_a="ct:soft", preset_b="mr", edges=False, device="cpu")
    fig = preview_figure(ct, mr, result, titles=("CT", "MR_T1"))
    try:
        axes = np.array(fig.axes).reshape(3, 3)  # three views x (A, B, fused): no edges column
        titles = [ax.get_title() for ax in axes[0]]
        assert titles[0].startswith("A = CT (reference)\nct:soft")
        assert titles[1].startswith("B = MR_T1, resampled onto A\nmr")
        assert titles[2].startswith("fused: laplacian")
        for row, view in enumerate(("axial", "coronal", "sagittal")):
            assert axes[row, 0].get_ylabel().startswith(view)
            for ax in axes[row]:
                assert _texts(ax) == set(ORIENTATION_LETTERS[view])
    finally:
        _close(fig)
    with_edges = fuse_volumes(ct, mr, method="average", preset_a="ct:soft", preset_b="mr", device="cpu")
    fig = preview_figure(ct, mr, with_edges, titles=("CT", "MR_T1"))
    try:
        assert len(fig.axes) == 3 * 4  # a fourth column; the edge overlay is a second image on its axes
        assert fig.axes[3].get_title().startswith("fused + edges") and len(fig.axes[3].images) == 2
    finally:
        _close(fig)


def test_letters_hold_whatever_the_storage_order(ct_mr):
    """The same CT stored with its x axis reversed shows the same axial picture, so the letters stay true."""
    ct, mr = ct_mr
    array = sitk.GetArrayFromImage(ct)[:, :, ::-1]
    flipped = sitk.GetImageFromArray(np.ascontiguousarray(array))
    flipped.SetSpacing(ct.GetSpacing())
    direction = np.asarray(ct.GetDirection()).reshape(3, 3)
    direction[:, 0] *= -1
    flipped.SetDirection(direction.ravel().tolist())
    flipped.SetOrigin(ct.TransformIndexToPhysicalPoint((ct.GetSize()[0] - 1, 0, 0)))
    pictures = []
    for image in (ct, flipped):
        result = fuse_volumes(image, mr, method="average", preset_a="ct:soft", preset_b="mr", edges=False,
                              device="cpu")
        fig = preview_figure(image, mr, result)
        pictures.append(fig.axes[0].images[0].get_array().copy())
        _close(fig)
    np.testing.assert_array_equal(pictures[0], pictures[1])


def test_the_slice_shown_is_selectable(ct_mr, tmp_path):
    ct, mr = ct_mr
    result = fuse_volumes(ct, mr, method="average", preset_a="ct:soft", preset_b="mr", edges=False,
                          return_sources=True, device="cpu")
    a_unit = sitk.GetArrayFromImage(result.sources[0])
    for choice, index in ((parse_slices("axial=1"), 1), (parse_slices("0"), 0), (None, 2), (parse_slices("1.0"), 3)):
        fig = preview_figure(ct, mr, result, slices=choice)
        try:
            assert fig.axes[0].get_ylabel() == f"axial {index + 1}/4"
            # Axial slice ``index`` of A: this CT is stored axially with anterior up and right on the left.
            np.testing.assert_allclose(fig.axes[0].images[0].get_array(), a_unit[index], atol=1e-6)
        finally:
            _close(fig)
    for bad in ("axial", "1.5", "frontal=3", "axial=x"):
        with pytest.raises(InputError):
            parse_slices(bad)
    with pytest.raises(InputError, match="outside the 4 axial slices"):
        check_slices(ct, parse_slices("axial=4"))


def test_a_2d_pair_is_shown_once_without_letters(harvard_dir):
    mri = sitk.ReadImage(str(harvard_dir / "CT-MRI" / "MRI" / "41012.png"))
    ct = sitk.ReadImage(str(harvard_dir / "CT-MRI" / "CT" / "41012.png"))
    result = fuse_volumes(ct, mri, method="average", edges=False, device="cpu")
    fig = preview_figure(ct, mri, result, titles=("CT/41012", "MRI/41012"))
    try:
        assert len(fig.axes) == 3 and fig.axes[0].get_ylabel() == "2D image"
        assert all(not ax.texts for ax in fig.axes)
    finally:
        _close(fig)


def test_cli_preview_slice_is_checked_before_fusing(sts_dir, tmp_path):
    ct, mr = sts_dir / "CT.nii.gz", sts_dir / "MR_T1.nii.gz"
    out, png = tmp_path / "fused.nrrd", tmp_path / "preview.png"
    assert main(["fuse", str(ct), str(mr), "-o", str(out), "--method", "average", "--preview", str(png),
                 "--preview-slice", "axial=500", "-q"]) == 2
    assert not out.exists() and not png.exists()
    assert main(["fuse", str(ct), str(mr), "-o", str(out), "--method", "average", "--preview", str(png),
                 "--preview-slice", "axial=10,sagittal=60", "-q"]) == 0
    assert png.exists() and sitk.ReadImage(str(png)).GetSize()[0] > 800
