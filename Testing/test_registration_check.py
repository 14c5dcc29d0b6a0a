"""The registration check on real volumes: a known shift is found, registered inputs pass, sts_001's MR warns,
and its PET (one PET/CT frame with the CT) does not, whole or cropped to a few slices; through the API and the
CLI (the Slicer logic path is in test_slicer_logic.py)."""
from __future__ import annotations

import time

import numpy as np
import pytest
import SimpleITK as sitk

from MedFusionLib.cli import main
from MedFusionLib.engine import fuse_volumes
from MedFusionLib.registration_check import _MIN_GAIN, check_registration

SHIFT_MM = (3.0, -4.0, 3.5)  # LPS, |shift| = 6.1 mm


@pytest.fixture(scope="module")
def sts(sts_dir):
    return {n: sitk.ReadImage(str(sts_dir / f"{n}.nii.gz")) for n in ("CT", "PET", "MR_T1")}


@pytest.fixture(scope="module")
def stroke(stroke_dir):
    return [sitk.ReadImage(str(stroke_dir / f"{n}.nii.gz")) for n in ("T1", "T2")]


def _shifted(image: sitk.Image, shift) -> sitk.Image:
    moved = sitk.Image(image)  # a copy: the caller's image keeps its origin
    moved.SetOrigin(tuple(np.add(image.GetOrigin(), shift)))
    return moved


def _shift_warnings(warnings):
    return [w for w in warnings if "seems shifted" in w]


def test_applied_shift_is_found_within_1_5_mm_in_seconds(stroke):
    t1, t2 = stroke
    started = time.perf_counter()
    found = check_registration(t1, _shifted(t2, SHIFT_MM))
    seconds = time.perf_counter() - started
    print(f"registration check: {found.offset_mm:.2f} mm for an applied {np.linalg.norm(SHIFT_MM):.2f} mm "
          f"in {seconds:.2f} s")
    assert abs(found.offset_mm - np.linalg.norm(SHIFT_MM)) <= 1.5
    assert np.allclose(found.translation_mm, SHIFT_MM, atol=1.5)  # and in the right direction
    assert seconds < 10.0  # under a second alone; 2 CPU cores shared with other jobs
    # T1 and T2 read about 1 mm apart unmoved; the move itself is recovered much more closely.
    baseline = check_registration(t1, t2)
    assert np.allclose(np.subtract(found.translation_mm, baseline.translation_mm), SHIFT_MM, atol=0.5)


def test_same_volume_moved_6_mm_reads_6_mm(stroke):
    t1 = stroke[0]
    found = check_registration(t1, _shifted(t1, (0.0, 0.0, 6.0)))
    assert abs(found.offset_mm - 6.0) <= 0.5 and found.misaligned


def test_api_warns_with_the_offset_and_what_to_do(stroke):
    t1, t2 = stroke
    result = fuse_volumes(t1, _shifted(t2, SHIFT_MM), method="average", edges=False, name_a="T1", name_b="T2")
    assert abs(result.registration_offset_mm - np.linalg.norm(SHIFT_MM)) <= 1.5
    (warning,) = _shift_warnings(result.warnings)
    assert f"{result.registration_offset_mm:.1f} mm" in warning and "BRAINS" in warning and "Elastix" in warning


def test_identical_grid_volumes_give_no_warning(stroke):
    result = fuse_volumes(*stroke, method="average", edges=False)
    assert result.registration_offset_mm is not None and result.registration_offset_mm < 3.0
    assert not _shift_warnings(result.warnings)


def test_sts_mr_against_ct_warns(sts):
    result = fuse_volumes(sts["CT"], sts["MR_T1"], method="average", edges=False)
    # The data README: about 12 mm with a rigid MI registration.
    assert 9.0 < result.registration_offset_mm < 15.0
    assert len(_shift_warnings(result.warnings)) == 1


PET_CT_CROPS = {"full": (slice(None),) * 3, "6 slices": (slice(None), slice(None), slice(24, 30)),
                "block": (slice(0, 120), slice(40, 160), slice(20, 32))}


@pytest.mark.parametrize("crop", PET_CT_CROPS)
def test_pet_against_its_own_ct_gives_no_warning(sts, crop):
    """One PET/CT scan, one frame of reference: the check must not cry wolf, even on a crop of a few slices."""
    ct = sts["CT"][PET_CT_CROPS[crop]]
    started = time.perf_counter()
    found = check_registration(ct, sts["PET"])
    assert time.perf_counter() - started < 10.0
    assert not found.misaligned and found.warning("CT", "PET") is None
    # An estimate above the threshold that does not beat zero shift significantly is not reported as a shift.
    assert found.reported_mm is None or found.reported_mm <= found.threshold_mm
    assert found.reported_mm is not None or found.cannot_tell  # "cannot tell" always says why
    if crop == "6 slices":  # 19.6 mm thick: z is not searched
        assert found.searched_axes == (True, True, False)


def test_api_gives_no_warning_on_the_pet_ct_crop_that_used_to_warn(sts):
    result = fuse_volumes(sts["CT"][:, :, 24:30], sts["PET"], method="average", edges=False, name_a="CT",
                          name_b="PET")
    assert not _shift_warnings(result.warnings)  # it used to read 46 mm (a z shift out of the 6-slice crop)
    assert result.registration_offset_mm is None  # the 46 mm estimate is gone; the check cannot tell


@pytest.mark.parametrize("crop", [(slice(None), slice(None), slice(24, 30)),
                                  (slice(20, 150), slice(20, 140), slice(20, 40))])
def test_mr_crops_against_pet_give_no_warning(sts, crop):
    """The PET shares too little structure with an MR crop for a trustworthy estimate: silence, not a guess."""
    found = check_registration(sts["MR_T1"][crop], sts["PET"])
    assert not found.misaligned


def test_thin_overlap_is_not_searched_across_and_the_warning_says_so(sts):
    """A 6-slice CT crop against the MR: the in-plane offset is still found, z is left out and said so."""
    found = check_registration(sts["CT"][:, :, 24:30], sts["MR_T1"])
    assert found.searched_axes == (True, True, False) and found.translation_mm[2] == 0.0
    assert found.misaligned and found.gain >= _MIN_GAIN and 8.0 < found.offset_mm < 15.0
    assert "not along CT's voxel axis k: the overlap is too thin there" in found.warning("CT", "MR")


def test_single_slices_are_checked_in_plane(stroke):
    """One oblique slice each (a 3D image of depth 1): no crash; the slab's normal (A's axis k) is not searched,
    although the tilted slice spans more than 40 mm along LPS z; in-plane the pair reads aligned."""
    t1, t2 = (image[:, :, 70:71] for image in stroke)
    found = check_registration(t1, t2)
    assert found.searched_axes[2] is False and not found.misaligned


def test_no_common_structure_cannot_tell(stroke):
    """T1 against noise on its own grid: no offset is reported at all (None), and no warning."""
    t1 = stroke[0]
    noise = sitk.GetImageFromArray(np.random.default_rng(0).random(sitk.GetArrayViewFromImage(t1).shape)
                                   .astype(np.float32))
    noise.CopyInformation(t1)
    found = check_registration(t1, noise)
    assert found.offset_mm is None and found.reported_mm is None and found.warning("T1", "noise") is None


def test_check_can_be_skipped_and_2d_pairs_are_not_checked(stroke, harvard_dir):
    t1, t2 = stroke
    skipped = fuse_volumes(t1, _shifted(t2, SHIFT_MM), method="average", edges=False, check_registration=False)
    assert skipped.registration_offset_mm is None and not _shift_warnings(skipped.warnings)
    pair = [sitk.ReadImage(str(harvard_dir / "CT-MRI" / m / "2004.png")) for m in ("CT", "MRI")]
    flat = fuse_volumes(*pair, method="average", edges=False)
    assert flat.registration_offset_mm is None  # PNGs carry no physical geometry to check


def test_cli_reports_the_offset_and_can_skip(stroke, tmp_path, capsys):
    t1, t2 = stroke
    sitk.WriteImage(t1, str(tmp_path / "T1.nrrd"))
    sitk.WriteImage(_shifted(t2, SHIFT_MM), str(tmp_path / "T2.nrrd"))
    argv = ["fuse", str(tmp_path / "T1.nrrd"), str(tmp_path / "T2.nrrd"), "--method", "average", "-q"]
    assert main(argv + ["-o", str(tmp_path / "f1.nrrd")]) == 0
    captured = capsys.readouterr()
    (line,) = [line for line in captured.out.splitlines() if line.startswith("medfusion:")]
    assert "(registration check: 'T2' about" in line and " mm from 'T1')" in line
    assert "seems shifted" in captured.err and "BRAINS" in captured.err
    assert main(argv + ["-o", str(tmp_path / "f2.nrrd"), "--no-registration-check"]) == 0
    captured = capsys.readouterr()
    assert "registration check" not in captured.out and "seems shifted" not in captured.err


def test_one_thread_beside_the_fusion_reads_what_the_default_reads(stroke):
    """The engine runs the check with 1 SimpleITK thread beside the fusion: the same estimate as the default."""
    t1, t2 = stroke
    moved = _shifted(t2, SHIFT_MM)
    default, one = check_registration(t1, moved), check_registration(t1, moved, threads=1)
    assert np.allclose(one.translation_mm, default.translation_mm, atol=1e-6)
    assert one.misaligned == default.misaligned and abs(one.gain - default.gain) < 1e-6
