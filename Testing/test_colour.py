"""Colour fusion of functional images (issue 6): hue keeps meaning function, luminance carries anatomy."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import SimpleITK as sitk

from MedFusionLib.cli import main
from MedFusionLib.colour import apply_colour_table, colour_table, rgb_to_ycbcr, ycbcr_to_rgb
from MedFusionLib.data_split import list_pairs
from MedFusionLib.engine import fuse_volumes
from MedFusionLib.errors import InputError
from MedFusionLib.metrics import qabf

HUE_TOLERANCE_DEG = 15.0
# Share of hot pixels whose hue stays within the tolerance. YCbCr keeps CbCr exactly; hue moves only where the
# fused Y pushes a saturated colour out of the RGB gamut and clipping bends it. Measured on the validation
# pairs (worst pair): laplacian 0.987, gff 0.988, MFEnet without edge lines 0.906.
METHODS = [("laplacian", {}, 0.95), ("gff", {}, 0.95), ("mfenet", {"edge_weight": 0.0}, 0.85)]


def _hsv(rgb_u8: np.ndarray) -> np.ndarray:
    """OpenCV HSV (full 0..255 hue range) of an RGB image or volume (OpenCV converts 2D images only)."""
    flat = np.ascontiguousarray(rgb_u8.reshape(-1, rgb_u8.shape[-2], 3))
    return cv2.cvtColor(flat, cv2.COLOR_RGB2HSV_FULL).reshape(rgb_u8.shape)


def _hue_deg(rgb_u8: np.ndarray) -> np.ndarray:
    return _hsv(rgb_u8)[..., 0].astype(np.float32) * 360 / 256


def _hot(rgb_u8: np.ndarray) -> np.ndarray:
    """Functional hot regions: saturated (S > 0.4) and bright (V > 0.3) pseudo-colour."""
    hsv = _hsv(rgb_u8)
    return (hsv[..., 1] > 0.4 * 255) & (hsv[..., 2] > 0.3 * 255)


def _hue_error(fused_u8, functional_u8, mask):
    diff = np.abs(_hue_deg(fused_u8) - _hue_deg(functional_u8))
    return np.minimum(diff, 360 - diff)[mask]


def _luma(rgb_u8):
    return rgb_to_ycbcr(rgb_u8.astype(np.float32) / 255)[..., 0]


@pytest.fixture(scope="module")
def functional_pairs(harvard_dir):
    """Held-out PET-MRI and SPECT-MRI pairs (validation cases), a few slices each."""
    pairs = []
    for folder in ("PET-MRI", "SPECT-MRI"):
        pairs += list_pairs(harvard_dir, split="val", folders=[folder])[::8][:3]
    return [(p, sitk.ReadImage(str(p.path_a)), sitk.ReadImage(str(p.path_b))) for p in pairs]


@pytest.mark.parametrize("method,options,share", METHODS, ids=[m[0] for m in METHODS])
def test_hue_of_hot_regions_is_the_functional_hue(functional_pairs, method, options, share):
    for pair, mri, functional in functional_pairs:
        result = fuse_volumes(mri, functional, method=method, method_options=options, edges=False)
        assert result.colour_source == "B" and result.fused.GetNumberOfComponentsPerPixel() == 3
        rgb = sitk.GetArrayFromImage(functional)
        errors = _hue_error(sitk.GetArrayFromImage(result.fused), rgb, _hot(rgb))
        assert errors.size > 500, pair.key
        assert np.mean(errors <= HUE_TOLERANCE_DEG) >= share, (pair.key, np.mean(errors <= HUE_TOLERANCE_DEG))
        assert np.median(errors) <= 2.0, pair.key


@pytest.mark.parametrize("method,options", [(m, o) for m, o, _ in METHODS], ids=[m[0] for m in METHODS])
def test_fused_luminance_carries_the_mri_structure(functional_pairs, method, options):
    """Edge preservation of the MRI in the fused Y (Q_AB/F with the MRI as both sources) beats averaging."""
    for pair, mri, functional in functional_pairs:
        mri_unit = sitk.GetArrayFromImage(mri).astype(np.float32) / 255
        ours = fuse_volumes(mri, functional, method=method, method_options=options, edges=False)
        base = fuse_volumes(mri, functional, method="average", edges=False)
        q_ours = qabf(mri_unit, mri_unit, _luma(sitk.GetArrayFromImage(ours.fused)))
        q_base = qabf(mri_unit, mri_unit, _luma(sitk.GetArrayFromImage(base.fused)))
        assert q_ours > q_base + 0.1, (pair.key, q_ours, q_base)


def test_ycbcr_round_trip_is_exact():
    rng = np.random.default_rng(0)
    rgb = rng.random((64, 3)).astype(np.float32)
    np.testing.assert_allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-6)
    # BT.601 full range: white has Y = 1 and neutral chroma; pure red has Cr at its maximum.
    np.testing.assert_allclose(rgb_to_ycbcr(np.array([1.0, 1.0, 1.0])), [1.0, 0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(rgb_to_ycbcr(np.array([1.0, 0.0, 0.0])), [0.299, 0.331264, 1.0], atol=1e-6)


def test_colour_tables_from_names_and_arrays():
    hot = colour_table("hot")
    assert hot.shape == (256, 3)
    np.testing.assert_allclose(hot[0], [0.0416, 0.0, 0.0], atol=1e-3)  # matplotlib's hot starts almost black
    np.testing.assert_allclose(hot[-1], [1.0, 1.0, 1.0])
    two = colour_table([[0, 0, 0, 255], [255, 0, 0, 255]])  # 0..255 RGBA rows: scaled, alpha dropped
    np.testing.assert_allclose(two[[0, 128, 255]], [[0, 0, 0], [128 / 255, 0, 0], [1, 0, 0]], atol=1e-6)
    np.testing.assert_allclose(apply_colour_table(np.array([0.0, 1.0]), two), [[0, 0, 0], [1, 0, 0]])
    for bad in ("no-such-map", [[1, 2]], np.zeros((1, 3)), [[np.nan, 0, 0], [0, 0, 0]]):
        with pytest.raises(InputError):
            colour_table(bad)


@pytest.fixture(scope="module")
def sts(sts_dir):
    return sitk.ReadImage(str(sts_dir / "CT.nii.gz")), sitk.ReadImage(str(sts_dir / "PET.nii.gz"))


def test_suv_pet_with_a_colour_map_fuses_into_an_rgb_volume_on_the_ct_grid(sts):
    ct, pet = sts
    result = fuse_volumes(ct, pet, method="laplacian", preset_a="ct:soft", preset_b="pet", colormap_b="hot",
                          edges=False)
    fused = result.fused
    assert fused.GetNumberOfComponentsPerPixel() == 3 and fused.GetPixelID() == sitk.sitkVectorUInt8
    assert (fused.GetSize(), fused.GetOrigin(), fused.GetSpacing(), fused.GetDirection()) == \
        (ct.GetSize(), ct.GetOrigin(), ct.GetSpacing(), ct.GetDirection())
    assert result.colour_source == "B"
    # Where the PET is hot, the fused colour has the colour map's hue there.
    pet_on_ct = sitk.GetArrayFromImage(sitk.Resample(pet, ct, sitk.Transform(), sitk.sitkLinear, 0.0,
                                                     sitk.sitkFloat32))
    window = result.windows["B"]
    unit = np.clip((pet_on_ct - window.low) / (window.high - window.low), 0, 1)
    expected = (apply_colour_table(unit, colour_table("hot")) * 255).round().astype(np.uint8)
    hot = _hot(expected) & (unit > 0.3)
    assert hot.sum() > 1000
    errors = _hue_error(sitk.GetArrayFromImage(fused), expected, hot)
    assert np.mean(errors <= HUE_TOLERANCE_DEG) >= 0.95 and np.median(errors) <= 2.0


def test_colour_map_on_an_rgb_image_is_ignored_with_a_warning(harvard_dir):
    mri = sitk.ReadImage(str(harvard_dir / "PET-MRI" / "MRI" / "25015.png"))
    pet = sitk.ReadImage(str(harvard_dir / "PET-MRI" / "PET" / "25015.png"))
    plain = fuse_volumes(mri, pet, method="average", edges=False)
    mapped = fuse_volumes(mri, pet, method="average", edges=False, colormap_b="hot")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(plain.fused), sitk.GetArrayFromImage(mapped.fused))
    assert any("colour map is ignored" in w for w in mapped.warnings)


def test_cli_colour_map(sts_dir, tmp_path, capsys):
    ct = sitk.ReadImage(str(sts_dir / "CT.nii.gz"))[40:160, 40:160, 25:31]
    sitk.WriteImage(ct, str(tmp_path / "ct.nrrd"))
    out = tmp_path / "fused.nii.gz"
    args = ["fuse", str(tmp_path / "ct.nrrd"), str(sts_dir / "PET.nii.gz"), "-o", str(out), "--method", "average",
            "--preset-a", "ct:soft", "--preset-b", "pet", "-q"]
    assert main(args + ["--colormap-b", "inferno"]) == 0
    image = sitk.ReadImage(str(out))
    assert image.GetNumberOfComponentsPerPixel() == 3 and image.GetSize() == ct.GetSize()
    assert "RGB output" in capsys.readouterr().out
    out.unlink()
    assert main(args + ["--colormap-b", "rainbowish"]) == 2
    assert "Unknown colour map 'rainbowish'" in capsys.readouterr().err and not out.exists()
