"""The built-in head phantom (anatomy per modality, different grids) and the demo command."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from MedFusionLib.cli import main
from MedFusionLib.phantom import HOT_FOCI, LESION, make_head_phantom


@pytest.fixture(scope="module")
def phantom():
    return make_head_phantom(scale=0.5)


def _value_at(image, point_mm):
    index = image.TransformPhysicalPointToIndex([float(c) for c in point_mm])
    return float(image[index])


def test_grids_differ_but_share_a_frame(phantom):
    ct, mr, pet = phantom["ct"], phantom["mr"], phantom["pet"]
    assert ct.GetSize() != mr.GetSize() != pet.GetSize()
    assert ct.GetSpacing() != mr.GetSpacing()
    assert not np.allclose(mr.GetDirection(), np.eye(3).ravel())  # MR is oblique
    # Same anatomy at the same physical point, whatever the grid.
    centre_of_ventricle = (-9.0, -2.0, 4.0)
    assert _value_at(mr, centre_of_ventricle) < 250  # CSF dark on T1
    assert _value_at(ct, centre_of_ventricle) < 20  # CSF ~8 HU


def test_contrasts_are_anatomically_plausible(phantom):
    ct, mr, pet = phantom["ct"], phantom["mr"], phantom["pet"]
    skull = (0.0, -90.0, 0.0)  # 8 mm inside the head's anterior surface: in the skull shell (5-11 mm deep)
    white = (20.0, 20.0, -30.0)
    assert _value_at(ct, skull) > 700  # bone bright on CT
    assert _value_at(mr, skull) < 250  # and dark on T1
    assert _value_at(mr, white) > 550  # white matter bright on T1
    assert _value_at(ct, (0.0, 0.0, 95.0)) < -900  # air above the head (semi-axis 88 mm)
    lesion_centre, _ = LESION
    assert _value_at(pet, lesion_centre) > 2 * _value_at(pet, white)  # hot lesion
    for centre, _ in HOT_FOCI:
        assert _value_at(pet, centre) > 6.0
    assert ct.GetPixelID() == sitk.sitkInt16


def test_phantom_is_seeded(phantom):
    again = make_head_phantom(modalities=("mr",), scale=0.5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(again["mr"]), sitk.GetArrayFromImage(phantom["mr"]))


def test_demo_writes_every_output(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--scale", "0.35", "--method", "laplacian"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["edges.nrrd", "fused.nrrd", "phantom_ct.nrrd", "phantom_mr.nrrd", "preview.png"]
    ct = sitk.ReadImage(str(out / "phantom_ct.nrrd"))
    fused = sitk.ReadImage(str(out / "fused.nrrd"))
    assert fused.GetSize() == ct.GetSize() and fused.GetDirection() == ct.GetDirection()
    preview = sitk.ReadImage(str(out / "preview.png"))
    assert preview.GetSize()[0] > 600 and preview.GetNumberOfComponentsPerPixel() in (3, 4)
    assert "preview" in capsys.readouterr().out
