"""Volume I/O: every format round-trips values and geometry; DICOM series; RGB volumes; 2D image pairs."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from MedFusionLib.engine import fuse_volumes
from MedFusionLib.errors import InputError, WriteError
from MedFusionLib.volume_io import check_output_path, read_volume, write_volume


@pytest.fixture(scope="module")
def oblique_block(stroke_dir):
    """A block of the real oblique T2 volume (float, scale factor applied by the reader)."""
    return sitk.ReadImage(str(stroke_dir / "T2.nii.gz"))[30:70, 40:90, 50:80]


@pytest.mark.parametrize("suffix", [".nrrd", ".nii", ".nii.gz", ".mha", ".mhd"])
def test_volume_formats_round_trip(tmp_path, oblique_block, suffix):
    path = write_volume(oblique_block, tmp_path / f"v{suffix}")
    back = read_volume(path)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(oblique_block))
    exact = suffix in (".nrrd", ".mha", ".mhd")  # NIfTI stores geometry in float32
    tol = 0 if exact else 1e-4
    np.testing.assert_allclose(back.GetOrigin(), oblique_block.GetOrigin(), atol=tol)
    np.testing.assert_allclose(back.GetSpacing(), oblique_block.GetSpacing(), atol=tol)
    np.testing.assert_allclose(back.GetDirection(), oblique_block.GetDirection(), atol=tol)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".medfusion")) == []


def test_rgb_volume_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    rgb = sitk.GetImageFromArray(rng.integers(0, 256, (6, 7, 8, 3), dtype=np.uint8), isVector=True)
    rgb.SetSpacing((0.5, 0.7, 2.0))
    rgb.SetOrigin((1.0, -2.0, 3.0))
    for suffix in (".nrrd", ".nii.gz", ".mha"):
        back = read_volume(write_volume(rgb, tmp_path / f"rgb{suffix}"))
        assert back.GetNumberOfComponentsPerPixel() == 3
        np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(rgb))
        np.testing.assert_allclose(back.GetSpacing(), rgb.GetSpacing(), atol=1e-6)


def _write_dicom_series(volume: sitk.Image, folder):
    """Write a CT series slice by slice with the tags that carry geometry (SimpleITK's DICOM example)."""
    folder.mkdir()
    volume = sitk.Cast(volume, sitk.sitkInt16)
    direction = volume.GetDirection()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series_tags = [("0008|0060", "CT"), ("0020|000e", "1.2.826.0.1.3680043.2.1125.1.12345"),
                   ("0020|000d", "1.2.826.0.1.3680043.2.1125.1.54321"),
                   # Image Orientation (Patient): direction of the rows (index i), then of the columns (j).
                   ("0020|0037", "\\".join(f"{v:.10f}" for v in (direction[0], direction[3], direction[6],
                                                                 direction[1], direction[4], direction[7]))),
                   ("0028|0030", f"{volume.GetSpacing()[1]:.10f}\\{volume.GetSpacing()[0]:.10f}")]
    for k in range(volume.GetDepth()):
        piece = volume[:, :, k]
        for tag, value in series_tags:
            piece.SetMetaData(tag, value)
        position = volume.TransformIndexToPhysicalPoint((0, 0, k))
        piece.SetMetaData("0020|0032", "\\".join(f"{p:.10f}" for p in position))
        piece.SetMetaData("0020|0013", str(k + 1))
        piece.SetMetaData("0018|0050", f"{volume.GetSpacing()[2]:.10f}")
        piece.SetMetaData("0008|0018", f"1.2.826.0.1.3680043.2.1125.1.12345.{k + 1}")
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(piece)


def test_dicom_series_folder(tmp_path, sts_dir):
    ct = sitk.ReadImage(str(sts_dir / "CT.nii.gz"))[50:120, 60:130, 10:30]
    folder = tmp_path / "dicom"
    _write_dicom_series(ct, folder)
    back = read_volume(folder)
    assert back.GetSize() == ct.GetSize()
    np.testing.assert_allclose(back.GetOrigin(), ct.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(back.GetSpacing(), ct.GetSpacing(), atol=1e-3)
    np.testing.assert_allclose(back.GetDirection(), ct.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), np.rint(sitk.GetArrayFromImage(ct)).astype(np.int16))


def test_empty_dicom_folder_is_an_error(tmp_path):
    with pytest.raises(InputError, match="contains no DICOM series"):
        read_volume(tmp_path)


def test_harvard_png_pair_fuses_as_one_slice_and_writes_png(harvard_dir, tmp_path):
    mri = read_volume(harvard_dir / "PET-MRI" / "MRI" / "25015.png")
    pet = read_volume(harvard_dir / "PET-MRI" / "PET" / "25015.png")
    assert mri.GetDimension() == 2 and pet.GetNumberOfComponentsPerPixel() == 3
    result = fuse_volumes(mri, pet, method="laplacian")
    assert result.slices == 1 and result.colour_source == "B"
    out = write_volume(result.fused, tmp_path / "fused.png")
    back = sitk.ReadImage(str(out))
    assert back.GetSize() == (256, 256) and back.GetNumberOfComponentsPerPixel() == 3
    grey = fuse_volumes(read_volume(harvard_dir / "CT-MRI" / "CT" / "2004.png"),
                        read_volume(harvard_dir / "CT-MRI" / "MRI" / "2004.png"), method="max")
    back = sitk.ReadImage(str(write_volume(grey.fused, tmp_path / "grey.tif")))
    assert back.GetPixelID() == sitk.sitkUInt8
    expected = np.rint(sitk.GetArrayFromImage(grey.fused) * 255)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), expected)


@pytest.mark.parametrize("name,message", [
    ("out.png", "Cannot write a 3D volume"),
    ("missing_folder/out.nrrd", "does not exist"),
    ("out.xyz", "Cannot write"),
])
def test_output_path_checks(tmp_path, name, message):
    with pytest.raises(InputError, match=message):
        check_output_path(tmp_path / name, dimension=3)


def test_failed_write_leaves_nothing(tmp_path):
    """A writer failure (BMP cannot hold 5 channels) is a clear error and leaves no file behind."""
    image = sitk.GetImageFromArray(np.zeros((4, 4, 5), np.uint8), isVector=True)
    with pytest.raises(WriteError, match="Could not write"):
        write_volume(image, tmp_path / "x.bmp")
    assert list(tmp_path.iterdir()) == []
