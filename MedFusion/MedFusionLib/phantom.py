"""A multi-modal head phantom, defined analytically in physical (LPS, mm) space.

The same anatomy (scalp, skull, CSF, cortical grey matter with gyri, white matter, lateral ventricles, a
lesion, a few hot spots) is sampled on a different grid for each modality, so fusing them exercises real
physical-space resampling:

* CT  - Hounsfield units: skull bright (~1200 HU), brain 28-40 HU, CSF ~8 HU, air -1000 HU;
        axis-aligned grid, 0.9 x 0.9 x 2.0 mm.
* MR  - T1-weighted contrast: white matter brighter than grey matter, CSF dark, skull dark, scalp fat
        bright, a smooth bias field; oblique grid (rotated 10 degrees about S, tilted 5 degrees), 1.1 mm.
* PET - SUV: grey matter uptake above white matter, CSF and bone near 0, a hot lesion and two hot foci,
        blurred to PET resolution; coarse grid, 3 mm.

Boundaries are anti-aliased over about one voxel along its coarsest axis (partial volume); the cortex folds
smoothly in every direction; the noise is seeded.
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

HEAD_AXES = np.array([78.0, 98.0, 88.0])  # semi-axes (L-R, A-P, S-I) in mm
_SHELLS = (("scalp", 0.0), ("skull", 5.0), ("csf", 11.0), ("grey", 14.0), ("white", 19.0))
_VENTRICLES = (((-9.0, -2.0, 4.0), (6.0, 22.0, 9.0)), ((9.0, -2.0, 4.0), (6.0, 22.0, 9.0)))
LESION = ((28.0, -22.0, 6.0), 11.0)  # centre (mm), radius (mm)
_FOLDS = 11.0  # gyral folds: spatial frequency over the unit sphere (about 3-4 folds per quarter of the head)
HOT_FOCI = (((-34.0, 30.0, 2.0), 6.0), ((4.0, 55.0, -6.0), 5.0))

#               air     scalp  skull  csf    grey   white  lesion  hot focus
_CONTRAST = {
    "ct":  dict(air=-1000.0, scalp=30.0, skull=1200.0, csf=8.0, grey=40.0, white=28.0, lesion=55.0, focus=40.0),
    "mr":  dict(air=0.0, scalp=550.0, skull=60.0, csf=120.0, grey=480.0, white=700.0, lesion=300.0, focus=480.0),
    "pet": dict(air=0.0, scalp=0.6, skull=0.3, csf=0.2, grey=7.0, white=2.5, lesion=14.0, focus=16.0),
}
_NOISE = {"ct": 4.0, "mr": 12.0, "pet": 0.15}  # CT: 4 HU, so grey and white matter (12 HU apart) show
_SEED_OFFSET = {"ct": 0, "mr": 1, "pet": 2}  # each modality has its own noise, whatever else is rendered

GRIDS = {  # size (i, j, k), spacing mm, rotation about S (deg), tilt about L-R (deg), centre offset (mm)
    "ct": ((200, 240, 100), (0.9, 0.9, 2.0), 0.0, 0.0, (0.0, 0.0, 0.0)),
    "mr": ((176, 208, 180), (1.1, 1.1, 1.1), 10.0, 5.0, (3.0, -4.0, 5.0)),
    "pet": ((72, 80, 72), (3.0, 3.0, 3.0), 0.0, 0.0, (-2.0, 2.0, 0.0)),
}


def _rotation(about_s_deg: float, tilt_deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(about_s_deg)), np.sin(np.radians(about_s_deg))
    rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    c, s = np.cos(np.radians(tilt_deg)), np.sin(np.radians(tilt_deg))
    rx = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    return rz @ rx


def make_grid(size: Sequence[int], spacing: Sequence[float], about_s_deg: float = 0.0, tilt_deg: float = 0.0,
              centre: Sequence[float] = (0.0, 0.0, 0.0)) -> sitk.Image:
    """An empty float32 image whose grid is centred on ``centre`` (mm) with the given orientation."""
    image = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    direction = _rotation(about_s_deg, tilt_deg)
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection(direction.ravel().tolist())
    half_extent = (np.array(size) - 1) * np.array(spacing) / 2.0
    image.SetOrigin((np.array(centre) - direction @ half_extent).tolist())
    return image


def _physical_points(grid: sitk.Image) -> np.ndarray:
    """(k, j, i, 3) LPS coordinates of every voxel centre."""
    size = grid.GetSize()
    k, j, i = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in size[::-1]), indexing="ij")
    index = np.stack([i, j, k], axis=-1) * np.asarray(grid.GetSpacing(), dtype=np.float32)
    direction = np.asarray(grid.GetDirection(), dtype=np.float32).reshape(3, 3)
    return index @ direction.T + np.asarray(grid.GetOrigin(), dtype=np.float32)


def _inside(points: np.ndarray, centre, semi_axes, soft_mm: float, ripple: float = 0.0) -> np.ndarray:
    """Soft membership (0..1) of an ellipsoid; ``ripple`` folds its surface like gyri."""
    p = points - np.asarray(centre, dtype=np.float32)
    axes = np.maximum(np.asarray(semi_axes, dtype=np.float32), 1e-3)
    r = np.sqrt(np.sum((p / axes) ** 2, axis=-1))
    if ripple:
        # Folds as a smooth function of the direction from the centre (a unit vector), so the surface is smooth
        # in every view; angles (atan2) would put seams and corners into the sagittal and coronal planes.
        u = p / np.maximum(np.linalg.norm(p, axis=-1, keepdims=True), 1e-6)
        folds = np.sin(_FOLDS * u[..., 0] + 0.4) + np.sin(_FOLDS * u[..., 1] + 1.3) + np.sin(_FOLDS * u[..., 2] + 2.1)
        r = r * (1.0 + ripple * folds / 3.0)
    # Signed distance to the surface along the ray from the centre: exact for spheres, close for these shapes.
    distance = (1.0 - r) * np.linalg.norm(p, axis=-1) / np.maximum(r, 1e-6)
    return np.clip(0.5 + distance / soft_mm, 0.0, 1.0)


def tissue_memberships(points: np.ndarray, soft_mm: float) -> Dict[str, np.ndarray]:
    shells = {}
    for name, inset in _SHELLS:
        ripple = 0.035 if name in ("grey", "white") else 0.0
        shells[name] = _inside(points, (0.0, 0.0, 0.0), HEAD_AXES - inset, soft_mm, ripple)
    ventricles = np.maximum.reduce([_inside(points, c, ax, soft_mm) for c, ax in _VENTRICLES])
    lesion = _inside(points, LESION[0], (LESION[1],) * 3, soft_mm)
    foci = np.maximum.reduce([_inside(points, c, (r,) * 3, soft_mm) for c, r in HOT_FOCI])
    return {**shells, "ventricles": ventricles, "lesion": lesion, "focus": foci}


def render(modality: str, grid: sitk.Image, seed: int = 0) -> sitk.Image:
    """Sample the phantom for ``modality`` ('ct', 'mr' or 'pet') on ``grid``."""
    contrast = _CONTRAST[modality]
    points = _physical_points(grid)
    # Partial volume over the coarsest voxel extent: with the finest one, 2 mm CT slices would show stair steps.
    m = tissue_memberships(points, soft_mm=float(max(grid.GetSpacing())))
    value = np.full(points.shape[:-1], contrast["air"], dtype=np.float32)
    previous = "air"
    for name, _ in _SHELLS:  # nested shells: each replaces the one outside it
        value += m[name] * (contrast[name] - contrast[previous])
        previous = name
    for name, tissue in (("ventricles", "csf"), ("lesion", "lesion"), ("focus", "focus")):
        value = value * (1 - m[name]) + m[name] * contrast[tissue]
    rng = np.random.default_rng(seed)
    if modality == "mr":
        bias = 1.0 + 0.08 * points[..., 0] / HEAD_AXES[0] - 0.05 * points[..., 2] / HEAD_AXES[2]
        value = np.abs(value * bias + rng.normal(0.0, _NOISE["mr"], value.shape))
    elif modality == "pet":
        value = _blur_mm(value, grid, fwhm_mm=6.0)
        value = np.maximum(value + rng.normal(0.0, _NOISE["pet"], value.shape) * np.sqrt(value + 0.05), 0.0)
    else:
        value = value + rng.normal(0.0, _NOISE["ct"], value.shape)
    image = sitk.GetImageFromArray(value.astype(np.float32))
    image.CopyInformation(grid)
    if modality == "ct":
        image = sitk.Cast(sitk.Round(image), sitk.sitkInt16)  # CT is stored as integer HU
    return image


def _blur_mm(value: np.ndarray, grid: sitk.Image, fwhm_mm: float) -> np.ndarray:
    image = sitk.GetImageFromArray(value)
    image.CopyInformation(grid)
    sigma = fwhm_mm / 2.3548
    return sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(image, sigma))


def make_head_phantom(modalities: Tuple[str, ...] = ("ct", "mr", "pet"), scale: float = 1.0,
                      seed: int = 0) -> Dict[str, sitk.Image]:
    """The phantom in each modality on its own grid. ``scale`` < 1 shrinks the grids (for fast tests)."""
    images = {}
    for modality in modalities:
        size, spacing, about_s, tilt, centre = GRIDS[modality]
        size = [max(8, int(round(n * scale))) for n in size]
        spacing = [s / scale for s in spacing]
        images[modality] = render(modality, make_grid(size, spacing, about_s, tilt, centre), seed=seed + _SEED_OFFSET[modality])
    return images
