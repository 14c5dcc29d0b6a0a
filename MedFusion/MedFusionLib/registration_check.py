"""Registration check: how far B is from A in physical space, before fusing them.

Fusion assumes the two inputs are registered. A residual shift (a separately acquired MR, a patient who moved)
gives doubled structures that look like anatomy. This check estimates a rigid translation of B against A:

* both images as scalars (RGB as BT.601 luma), clipped to their 0.5-99.5 percentiles, so outliers (CT padding,
  hot spots) do not squeeze Mattes' histogram;
* resampled onto grids of at most 64 voxels per axis (and no finer than 2 mm), so the search takes seconds;
* Mattes mutual information (32 bins, a fixed 25% random sample with a fixed seed: deterministic), translation
  only, regular-step gradient descent on a two-level pyramid (smoothing 4 and 2 mm).

The estimate is a translation in mm. Above the threshold, max(3 mm, one voxel of B), the fusion warns with the
offset and what to do: register first (Slicer's General Registration (BRAINS) or Elastix). The check reports a
shift; it never moves B. 2D images (PNG, TIFF) carry no physical geometry, so they are not checked.

Measured (``check_registration`` on the shared volumes, 2 shared CPU cores): stroke T1 vs T2 (one grid) 1.0 mm;
T2 shifted by 6.1 mm -> 7.0 mm; T1 shifted 6 mm in z -> 5.97 mm; sts_001 CT vs MR 10.5 mm; 0.7-1.8 s each.
Limit: a functional image carries little anatomy; sts_001's PET against its own CT (one PET/CT frame) reads
about 7 mm, above its 4.7 mm threshold, so a PET warning deserves a look at the overlay before acting on it.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import SimpleITK as sitk

MIN_THRESHOLD_MM = 3.0
_MAX_VOXELS_PER_AXIS = 64
_MIN_SPACING_MM = 2.0
_BINS = 32
_SAMPLING = 0.25
_SEED = 20261201


@dataclass(frozen=True)
class RegistrationCheck:
    offset_mm: float  # length of the estimated translation of B against A
    translation_mm: Tuple[float, ...]  # (x, y, z) in LPS, as SimpleITK's TranslationTransform gives it
    threshold_mm: float
    seconds: float

    @property
    def misaligned(self) -> bool:
        return self.offset_mm > self.threshold_mm

    def warning(self, name_a: str, name_b: str) -> Optional[str]:
        if not self.misaligned:
            return None
        return (f"'{name_b}' seems shifted by about {self.offset_mm:.1f} mm from '{name_a}' (more than "
                f"{self.threshold_mm:.1f} mm): the fused image may show doubled structures. Register '{name_b}' "
                f"to '{name_a}' first, e.g. with Slicer's General Registration (BRAINS) or Elastix, then fuse.")


def threshold_mm(moving: sitk.Image) -> float:
    return max(MIN_THRESHOLD_MM, max(moving.GetSpacing()))


def _scalar(image: sitk.Image) -> sitk.Image:
    """Float32 scalar image, robustly clipped; RGB as BT.601 luma."""
    if image.GetNumberOfComponentsPerPixel() == 3:
        channels = [sitk.Cast(sitk.VectorIndexSelectionCast(image, c), sitk.sitkFloat32) for c in range(3)]
        scalar = 0.299 * channels[0] + 0.587 * channels[1] + 0.114 * channels[2]
    else:
        scalar = sitk.Cast(image, sitk.sitkFloat32)
    values = sitk.GetArrayViewFromImage(scalar)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return scalar
    low, high = np.percentile(finite[:: max(1, finite.size // 1_000_000)], (0.5, 99.5))
    array = np.clip(np.nan_to_num(values, nan=low, posinf=high, neginf=low), low, high).astype(np.float32)
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(scalar)
    return out


def _coarse(image: sitk.Image) -> sitk.Image:
    """The image on a coarser grid with the same extent, origin corner and direction (linear, smoothed)."""
    size, spacing = np.asarray(image.GetSize()), np.asarray(image.GetSpacing())
    extent = size * spacing
    new_spacing = np.maximum(np.maximum(spacing, _MIN_SPACING_MM), extent / _MAX_VOXELS_PER_AXIS)
    new_size = np.maximum(1, np.round(extent / new_spacing)).astype(int)
    new_spacing = extent / new_size
    # Keep the field of view: the first voxel's outer corner stays where it was.
    direction = np.asarray(image.GetDirection()).reshape(image.GetDimension(), -1)
    origin = np.asarray(image.GetOrigin()) + direction @ ((new_spacing - spacing) / 2.0)
    sigma = [max(0.01, (n - s) / 2.0) for n, s in zip(new_spacing, spacing)]  # anti-aliasing; > 0 for ITK
    smoothed = sitk.SmoothingRecursiveGaussian(image, sigma) if min(size) >= 4 else image
    grid = sitk.Image([int(n) for n in new_size], sitk.sitkFloat32)
    grid.SetSpacing(tuple(float(s) for s in new_spacing))
    grid.SetOrigin(tuple(float(o) for o in origin))
    grid.SetDirection(image.GetDirection())
    return sitk.Resample(smoothed, grid, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)


def check_registration(a: sitk.Image, b: sitk.Image) -> Optional[RegistrationCheck]:
    """Estimate B's rigid translation against A (see the module docstring); None for 2D images."""
    if a.GetDimension() != 3:
        return None
    started = time.perf_counter()
    fixed, moving = _coarse(_scalar(a)), _coarse(_scalar(b))
    registration = sitk.ImageRegistrationMethod()
    registration.SetMetricAsMattesMutualInformation(numberOfHistogramBins=_BINS)
    registration.SetMetricSamplingStrategy(registration.RANDOM)
    registration.SetMetricSamplingPercentage(_SAMPLING, _SEED)
    registration.SetInterpolator(sitk.sitkLinear)
    registration.SetOptimizerAsRegularStepGradientDescent(learningRate=4.0, minStep=0.05, numberOfIterations=150,
                                                         relaxationFactor=0.6, gradientMagnitudeTolerance=1e-8)
    registration.SetOptimizerScalesFromPhysicalShift()
    registration.SetShrinkFactorsPerLevel([2, 1])
    registration.SetSmoothingSigmasPerLevel([4.0, 2.0])
    registration.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    registration.SetInitialTransform(sitk.TranslationTransform(a.GetDimension()), inPlace=False)
    try:
        transform = registration.Execute(fixed, moving)
        translation = tuple(float(t) for t in sitk.TranslationTransform(transform.GetNthTransform(0)
                                                                         if hasattr(transform, "GetNthTransform")
                                                                         else transform).GetOffset())
    except RuntimeError:  # too little overlap or signal for the metric: report nothing rather than guess
        translation = (math.nan,) * a.GetDimension()
    offset = float(np.linalg.norm(translation))
    return RegistrationCheck(offset, translation, threshold_mm(b), time.perf_counter() - started)
