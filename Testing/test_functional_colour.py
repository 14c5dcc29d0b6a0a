"""Functional colour keeps its meaning (issue 13, deliverable 2).

On sts_001 CT + SUV PET with the hot map, YCbCr for every map (the previous behaviour, still selectable with
colour_mode="ycbcr") leaves only 9-12% of the voxels with PET <= 10% of its window untinted (low-uptake muscle
turns red), and with gff only 1.2% of the hottest voxels (PET >= 70%) bright and warm (scripts/trust_checks.py).
The automatic overlay mode for luminance-encoded maps gives 100% / 100% for every method.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import SimpleITK as sitk

from MedFusionLib import functional_colour
from MedFusionLib.cli import main
from MedFusionLib.colour import colour_table
from MedFusionLib.engine import fuse_volumes
from MedFusionLib.errors import InputError
from MedFusionLib.methods import REGISTRY


@pytest.fixture(scope="module")
def ct_pet(sts_dir):
    ct = sitk.ReadImage(str(sts_dir / "CT.nii.gz"))[:, :, 25:29]  # four slices through the tumour
    return ct, sitk.ReadImage(str(sts_dir / "PET.nii.gz"))


def _hsv(rgb_u8: np.ndarray):
    hsv = np.stack([cv2.cvtColor(np.ascontiguousarray(s), cv2.COLOR_RGB2HSV_FULL) for s in rgb_u8])
    hsv = hsv.astype(np.float32)
    return hsv[..., 0] * 360.0 / 256.0, hsv[..., 1] / 255.0, hsv[..., 2] / 255.0


def _pet_level(result, pet, ct):
    """The PET in [0, 1] of its window on the CT grid (the value the colour map is indexed with)."""
    window = result.windows["B"]
    on_ct = sitk.GetArrayFromImage(sitk.Resample(pet, ct, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32))
    return np.clip((on_ct - window.low) / (window.high - window.low), 0.0, 1.0)


def _targets(result, level):
    hue, saturation, value = _hsv(sitk.GetArrayFromImage(result.fused))
    hot, low = level >= 0.7, level <= 0.1
    assert hot.sum() > 1000 and low.sum() > 10000
    warm = (value >= 0.7) & ((hue <= 65.0) | (hue >= 345.0) | (saturation <= 0.2))  # red-yellow, or near-white
    return float(warm[hot].mean()), float((saturation[low] <= 0.2).mean())


@pytest.mark.parametrize("method", REGISTRY.names())
def test_hot_pet_is_overlaid_hottest_bright_and_warm_no_uptake_untinted(ct_pet, method):
    ct, pet = ct_pet
    result = fuse_volumes(ct, pet, method=method, preset_a="ct:soft", preset_b="pet", colormap_b="hot",
                          edges=False, device="cpu")
    assert result.colour_mode == "overlay"  # hot is luminance-encoded: chosen automatically
    bright_warm, untinted = _targets(result, _pet_level(result, pet, ct))
    assert bright_warm >= 0.9 and untinted >= 0.9, (bright_warm, untinted)


def test_ycbcr_stays_selectable_for_a_luminance_map_and_tints_low_uptake(ct_pet):
    ct, pet = ct_pet
    result = fuse_volumes(ct, pet, method="laplacian", preset_a="ct:soft", preset_b="pet", colormap_b="hot",
                          colour_mode="ycbcr", edges=False, device="cpu")
    assert result.colour_mode == "ycbcr"
    _, untinted = _targets(result, _pet_level(result, pet, ct))
    assert untinted < 0.5  # what the overlay mode exists for: YCbCr tints every low-uptake voxel red


@pytest.mark.parametrize("name, mode", [("hot", "overlay"), ("inferno", "overlay"), ("viridis", "overlay"),
                                        ("gray", "overlay"), ("rainbow", "ycbcr"), ("jet", "ycbcr"),
                                        ("hsv", "ycbcr")])
def test_mode_is_chosen_from_how_the_map_encodes_the_value(name, mode):
    assert functional_colour.resolve_mode("auto", colour_table(name)) == mode
    assert functional_colour.resolve_mode(None, colour_table(name)) == mode
    other = "ycbcr" if mode == "overlay" else "overlay"
    assert functional_colour.resolve_mode(other, colour_table(name)) == other
    with pytest.raises(InputError, match="Unknown colour mode 'blend'"):
        functional_colour.resolve_mode("blend", colour_table(name))


def test_overlay_keeps_the_colour_maps_hue_and_has_no_colour_below_the_threshold():
    table = colour_table("hot")
    level = np.linspace(0.0, 1.0, 101, dtype=np.float32)
    grey = np.full_like(level, 0.4)
    colour = table[np.rint(level * 255).astype(int)]
    rgb = functional_colour.overlay(grey, level, colour)
    below = level <= functional_colour.OVERLAY_START
    np.testing.assert_allclose(rgb[below], np.repeat(grey[below, None], 3, axis=1))
    full = level >= functional_colour.OVERLAY_FULL
    np.testing.assert_allclose(rgb[full], colour[full], atol=1e-6)


def test_harvard_rgb_pet_keeps_the_ycbcr_path(harvard_dir):
    mri = sitk.ReadImage(str(harvard_dir / "PET-MRI" / "MRI" / "41030.png"))
    pet = sitk.ReadImage(str(harvard_dir / "PET-MRI" / "PET" / "41030.png"))
    auto = fuse_volumes(mri, pet, method="laplacian", edges=False, device="cpu")
    explicit = fuse_volumes(mri, pet, method="laplacian", colour_mode="ycbcr", edges=False, device="cpu")
    assert auto.colour_mode == "ycbcr"
    np.testing.assert_array_equal(sitk.GetArrayFromImage(auto.fused), sitk.GetArrayFromImage(explicit.fused))
    overlay = fuse_volumes(mri, pet, method="laplacian", colour_mode="overlay", edges=False, device="cpu")
    assert overlay.colour_mode == "overlay" and overlay.fused.GetNumberOfComponentsPerPixel() == 3


def test_cli_colour_mode(sts_dir, tmp_path, capsys):
    ct, pet = sts_dir / "CT.nii.gz", sts_dir / "PET.nii.gz"
    outputs = {}
    for mode in ("overlay", "ycbcr"):
        out = tmp_path / f"{mode}.nrrd"
        assert main(["fuse", str(ct), str(pet), "-o", str(out), "--method", "average", "--preset-a", "ct:soft",
                     "--preset-b", "pet", "--colormap-b", "hot", "--colour-mode", mode, "-q"]) == 0
        outputs[mode] = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert outputs["overlay"].shape[-1] == 3 and not np.array_equal(outputs["overlay"], outputs["ycbcr"])
    with pytest.raises(SystemExit) as exit_info:
        main(["fuse", str(ct), str(pet), "-o", str(tmp_path / "bad.nrrd"), "--colour-mode", "blend"])
    assert exit_info.value.code == 2 and not (tmp_path / "bad.nrrd").exists()
