"""Calibrated warnings (advice.py): each fires on the real case it is meant for and stays silent on ordinary pairs."""
from __future__ import annotations

import pytest
import SimpleITK as sitk

from MedFusionLib.advice import COARSER_BY, MAX_LABELS, OVERLAP_WARN_BELOW, distinct_labels, voxel_ratio
from MedFusionLib.engine import fuse_volumes
from MedFusionLib.evaluation import COLOUR_NOTE

SLICES = slice(24, 30)  # a few CT slices through the sts_001 tumour keep each fusion well under a second


@pytest.fixture(scope="module")
def sts(sts_dir):
    images = {name: sitk.ReadImage(str(sts_dir / f"{name}.nii.gz")) for name in ("CT", "PET", "MR_T1", "CT_mask")}
    images["CT_crop"] = images["CT"][:, :, SLICES]
    return images


@pytest.fixture(scope="module")
def stroke(stroke_dir):
    return {name: sitk.ReadImage(str(stroke_dir / f"{name}.nii.gz")) for name in ("T1", "T2")}


def _warnings(a, b, name_a, name_b):
    # advice.py's warnings only: the registration check has its own tests (test_registration_check.py)
    return fuse_volumes(a, b, method="average", edges=False, name_a=name_a, name_b=name_b,
                        check_registration=False).warnings


# ----------------------------------------------------------------------------------------- silent


def test_ordinary_real_pairs_give_no_warning(sts, stroke):
    # CT + PET of one PET/CT scan (99% overlap), the stroke T1 + T2 on one grid, MR + PET (PET covers the MR).
    assert _warnings(sts["CT_crop"], sts["PET"], "CT", "PET") == []
    assert _warnings(stroke["T1"][:, :, 60:64], stroke["T2"], "T1", "T2") == []
    assert _warnings(sts["MR_T1"][:, :, SLICES], sts["PET"], "MR", "PET") == []


def test_the_demo_phantom_gives_no_warning():
    from MedFusionLib.phantom import make_head_phantom

    phantom = make_head_phantom(modalities=("ct", "mr"), scale=0.25)
    result = fuse_volumes(phantom["ct"], phantom["mr"], method="average", preset_a="ct:brain", preset_b="mr",
                          edges=False, name_a="CT", name_b="MR")
    assert OVERLAP_WARN_BELOW <= result.overlap < 1.0  # the oblique MR misses corners: not worth a word
    assert result.warnings == []


def test_grey_only_evaluation_prints_no_colour_note(harvard_dir, tmp_path):
    from MedFusionLib.evaluation import evaluate

    lines = []
    evaluate(tmp_path / "grey", pairs_dir=harvard_dir, methods=["average"], metrics=["EN"], folders=["CT-MRI"],
             limit=1, say=lines.append)
    assert not any(COLOUR_NOTE in line for line in lines)
    lines.clear()
    evaluate(tmp_path / "colour", pairs_dir=harvard_dir, methods=["average"], metrics=["EN"], folders=["PET-MRI"],
             limit=1, say=lines.append)
    assert any(COLOUR_NOTE in line for line in lines)


# ------------------------------------------------------------------------------------------- fire


def test_partial_overlap_warns_below_the_threshold_and_says_what_to_do(sts):
    result = fuse_volumes(sts["CT_crop"], sts["MR_T1"], method="average", edges=False, name_a="CT", name_b="MR",
                          check_registration=False)  # the MR's real 11 mm shift warns too: tested elsewhere
    assert result.overlap < OVERLAP_WARN_BELOW  # the MR covers only part of the CT (shared data README)
    [message] = result.warnings
    assert f"Only {100 * result.overlap:.0f}% of 'CT'" in message and "field of view of 'MR'" in message
    assert "registered" in message and "crop 'CT'" in message


def test_a_binary_mask_given_as_an_image_warns(sts):
    assert distinct_labels(sts["CT_mask"]) == 2
    [message] = _warnings(sts["CT_crop"], sts["CT_mask"], "CT", "CT_mask")
    assert "'CT_mask' holds only 2 distinct integer values" in message and "binary mask" in message
    [message] = _warnings(sts["CT_mask"][:, :, SLICES], sts["CT"], "CT_mask", "CT")  # as A, too
    assert "'CT_mask'" in message and "Fuse the image it was drawn on" in message


def test_real_images_are_not_taken_for_labelmaps(sts, stroke):
    # 8-bit MR (240 grey levels), float MR with a NIfTI scale factor, HU, SUV: all far above MAX_LABELS or not
    # integer-valued.
    for image in (stroke["T1"], stroke["T2"], sts["CT"], sts["PET"], sts["MR_T1"]):
        count = distinct_labels(image)
        assert count == 0 or count > MAX_LABELS


def test_pet_given_as_the_reference_warns_and_ct_as_the_reference_does_not(sts):
    assert voxel_ratio(sts["PET"], sts["CT"]) >= COARSER_BY
    [message] = _warnings(sts["PET"][:, :, SLICES], sts["CT"], "PET", "CT")
    assert "'PET' looks like a functional volume" in message and "4.7 x 4.7 x 3.3 mm" in message
    assert "Give the anatomical volume (CT or MR) as A" in message
    # The same grids the other way round, and a coarse CT (negative HU: anatomy) as A, stay silent.
    assert _warnings(sts["CT_crop"], sts["PET"], "CT", "PET") == []
    coarse_ct = sitk.Shrink(sts["CT_crop"], [4, 4, 1])
    assert voxel_ratio(coarse_ct, sts["MR_T1"]) >= COARSER_BY
    assert not any("functional" in w for w in _warnings(coarse_ct, sts["MR_T1"], "CT", "MR"))


def test_a_colour_pet_given_as_a_warns_and_the_usual_order_does_not(harvard_dir):
    from MedFusionLib.volume_io import read_volume

    folder = harvard_dir / "PET-MRI"
    name = sorted(p.name for p in (folder / "PET").iterdir())[0]
    pet, mri = read_volume(folder / "PET" / name), read_volume(folder / "MRI" / name)
    [message] = _warnings(pet, mri, "PET", "MRI")
    assert "'PET' is a colour (functional) image given as A" in message and "Give 'MRI' as A" in message
    assert _warnings(mri, pet, "MRI", "PET") == []
