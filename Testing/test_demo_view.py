"""The demo shows the anatomy it fuses (brain window on the head CT) and its phantom is smooth in every view."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from MedFusionLib.cli import DEMO_CT_WINDOW, main
from MedFusionLib.intensity import apply_window, choose_window
from MedFusionLib.phantom import HEAD_AXES, LESION, tissue_memberships


def _value_at(image, point_mm):
    return float(image[image.TransformPhysicalPointToIndex([float(c) for c in point_mm])])


def test_demo_uses_the_brain_window_and_warns_about_nothing(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--scale", "0.35", "--method", "average"]) == 0
    captured = capsys.readouterr()
    assert f"windows: CT {DEMO_CT_WINDOW} (L40 W80)" in captured.out
    assert "warning" not in captured.err
    ct = sitk.ReadImage(str(out / "phantom_ct.nrrd"))
    hu = {"lesion": _value_at(ct, LESION[0]), "white": _value_at(ct, (20.0, 20.0, -30.0)),
          "ventricle": _value_at(ct, (-9.0, -2.0, 4.0))}

    def shown(preset):  # the grey levels (0..1) the preview gives each tissue
        window = choose_window(sitk.GetArrayViewFromImage(ct), preset)
        return {k: float(apply_window(np.array([v], np.float32), window)[0][0]) for k, v in hu.items()}

    brain, bone = shown(DEMO_CT_WINDOW), shown("ct")
    # Lesion, white matter and CSF are distinct grey levels in the brain window, nearly one level in the bone window.
    assert brain["lesion"] - brain["white"] > 0.2 and brain["white"] - brain["ventricle"] > 0.1
    assert bone["lesion"] - bone["ventricle"] < 0.05


def _surface_radius(directions: np.ndarray, tissue: str = "white") -> np.ndarray:
    """Distance (mm) from the head centre to where ``tissue`` ends, along each unit direction (bisection)."""
    low, high = np.full(len(directions), 1.0), np.full(len(directions), float(HEAD_AXES.max()) + 5.0)
    for _ in range(45):
        middle = (low + high) / 2
        inside = tissue_memberships((directions * middle[:, None]).astype(np.float32), soft_mm=1e-3)[tissue] > 0.5
        low, high = np.where(inside, middle, low), np.where(inside, high, middle)
    return (low + high) / 2


@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_the_brain_surface_is_smooth_in_every_plane(plane):
    """No seams (jumps) and no corners (kinks) along a full circle through the centre in each plane."""
    angles = np.radians(np.arange(0.0, 360.0, 0.1))
    c, s, zero = np.cos(angles), np.sin(angles), np.zeros_like(angles)
    directions = {"axial": (c, s, zero), "coronal": (c, zero, s), "sagittal": (zero, c, s)}[plane]
    radius = _surface_radius(np.stack(directions, axis=1))
    assert radius.min() > 40.0  # the white matter really was found
    step = np.abs(np.diff(np.append(radius, radius[0])))
    kink = np.abs(np.diff(np.concatenate([radius[-1:], radius, radius[:1]]), n=2))
    assert step.max() < 0.1, f"a seam in the {plane} view: the surface jumps {step.max():.2f} mm"
    assert kink.max() < 0.01, f"a corner in the {plane} view: slope changes by {kink.max():.3f} mm per 0.1 degree"
    assert np.ptp(radius - _ellipse_radius(np.stack(directions, axis=1))) > 1.0  # and it does fold (gyri)


def _ellipse_radius(directions: np.ndarray) -> np.ndarray:
    white_axes = HEAD_AXES - 19.0  # the white-matter shell's inset (phantom._SHELLS)
    return 1.0 / np.sqrt(np.sum((directions / white_axes) ** 2, axis=1))
