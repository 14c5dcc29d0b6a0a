"""Registration check: how far B is from A in physical space, before fusing them.

Fusion assumes the two inputs are registered. A residual shift (a separately acquired MR, a patient who moved)
gives doubled structures that look like anatomy. This check estimates a rigid translation of B against A:

* both images block-averaged (BinShrink) to at most 64 voxels per axis and no finer than 2 mm, so the search
  takes about a second and little memory, as scalars (RGB as BT.601 luma) clipped to their 0.5-99.5
  percentiles, so that outliers (CT padding, hot spots) do not squeeze Mattes' histogram;
* Mattes mutual information (32 bins, a fixed 25% random sample with a fixed seed: deterministic), translation
  only, regular-step gradient descent on a two-level pyramid (smoothing 4 and 2 mm).

The estimate is a translation in mm. Above the threshold, max(3 mm, one voxel of B), the fusion warns with the
offset and what to do: register first (Slicer's General Registration (BRAINS) or Elastix). The check reports a
shift; it never moves B. 2D images (PNG, TIFF) carry no physical geometry, so they are not checked.

Measured (``check_registration`` on the shared volumes, 2 shared CPU cores, 0.4-0.8 s each): stroke T1 vs T2
(one grid) 1.2 mm, the same (0.25, -0.6, 1.0) mm vector whether or not T2 is moved, so a real sub-voxel offset or
the metric's bias; T2 moved by (3.5, -4, 3) mm reads 7.1 mm, the move recovered within 0.05 mm; T1 moved 6 mm in z
reads 5.97 mm; sts_001 CT vs MR 11.1 mm. Limit: a functional image carries little anatomy; sts_001's PET against
its own CT (one PET/CT frame of reference) reads 7.9 mm, above its 4.7 mm threshold: real motion between the two
acquisitions or the metric's bias, this check cannot tell; look at the overlay before acting on a PET warning.
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


def _coarse(image: sitk.Image) -> sitk.Image:
    """A small float32 scalar version of the image: block averages (BinShrink) to at most 64 voxels per axis and
    no finer than 2 mm, RGB as BT.601 luma, clipped to its 0.5-99.5 percentiles. Shrinking first keeps the
    memory and time of the check small whatever the input size."""
    size, spacing = np.asarray(image.GetSize()), np.asarray(image.GetSpacing())
    factors = np.maximum(np.ceil(size / _MAX_VOXELS_PER_AXIS), np.round(_MIN_SPACING_MM / spacing))
    factors = [int(f) for f in np.clip(factors, 1, np.maximum(size // 4, 1))]  # keep 4 voxels for the pyramid
    if image.GetNumberOfComponentsPerPixel() == 3:
        from .colour import LUMA_WEIGHTS

        small = sum(w * sitk.Cast(sitk.BinShrink(sitk.VectorIndexSelectionCast(image, c), factors),
                                  sitk.sitkFloat32) for c, w in enumerate(LUMA_WEIGHTS))
    else:
        small = sitk.Cast(sitk.BinShrink(image, factors), sitk.sitkFloat32)
    values = sitk.GetArrayViewFromImage(small)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return small
    low, high = np.percentile(finite, (0.5, 99.5))
    out = sitk.GetImageFromArray(np.clip(np.nan_to_num(values, nan=low, posinf=high, neginf=low), low, high)
                                 .astype(np.float32))
    out.CopyInformation(small)
    return out


def check_registration(a: sitk.Image, b: sitk.Image) -> Optional[RegistrationCheck]:
    """Estimate B's rigid translation against A (see the module docstring); None for 2D images."""
    if a.GetDimension() != 3:
        return None
    started = time.perf_counter()
    fixed, moving = _coarse(a), _coarse(b)
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
