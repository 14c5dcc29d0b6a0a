"""Registration check: how far B is from A in physical space, before fusing them.

Fusion assumes the two inputs are registered. A residual shift (a separately acquired MR, a patient who moved)
gives doubled structures that look like anatomy. This check estimates a rigid translation of B against A. A
false warning is costly (clinicians learn to ignore it), so it warns only on evidence, and says "cannot tell"
(offset None, no warning) rather than guess:

* both images block-averaged (BinShrink) to at most 64 voxels per axis and no finer than 2 mm, as scalars (RGB as
  BT.601 luma) clipped to their 0.5-99.5 percentiles, so outliers (CT padding, hot spots) do not squeeze the
  histogram; then smoothed to one common resolution (the coarser of the two: sts_001 CT vs MR read 17.4 mm
  without it, 12.3 mm with it, the data README's rigid registration about 12 mm);
* the metric (Mattes mutual information, 32 bins) is evaluated only on A's voxels that stay inside B's field of
  view for every translation searched, so every trial shift is scored on the same voxels;
* the search range per axis is bounded by the overlap: at most 16 mm and a quarter of the overlap's extent along
  that axis (a translation that leaves little overlap is not an answer), and an axis along which the overlap is
  thinner than 40 mm (a crop of a few slices) is not searched: its component is 0 and the warning says so; the
  axes are A's voxel axes (the search runs in A's frame), so an oblique slab is thin along its own normal (the
  unbounded search of the previous version read sts_001's CT[:, :, 24:30] 46.1 mm from its own PET, 39 mm of it
  along z, and CT[0:120, 40:160, 20:32] 23.9 mm);
* a coarse exhaustive grid (4 mm steps, a fixed 5000-voxel sample) over that range, then regular-step gradient
  descent from the best grid point (20000 voxels), kept only if it stays in range; a best shift at the edge of
  the range may lie beyond it: cannot tell;
* the decision, on all masked voxels (deterministic): the gain of mutual information at the estimate over zero
  shift, relative to the value at zero, must reach 30% (``_MIN_GAIN``) for an offset above the threshold to be
  reported and warned about; below it the check cannot tell. Measured (scripts/registration_check_cases.py):
  real shifts gain 37% (sts_001 CT vs MR) to 286%; the PET against its own CT 1-12%, whole or cropped; MR crops
  against the PET at most 23% (the MR is about 12 mm from the PET/CT frame, but the estimates there do not point
  that way: too little common structure to tell). Mutual information at the estimate below 0.05 nats, or an
  overlap under 2000 coarse voxels, is also "cannot tell".

Above the threshold, max(3 mm, one voxel of B), the fusion warns with the offset, the gain, and what to do:
register first (Slicer's General Registration (BRAINS) or Elastix). The check reports a shift; it never moves B.
2D images (PNG, TIFF) carry no physical geometry, so they are not checked.

Limit: a PET pins a shift poorly: sts_001 CT vs its own PET estimates (0, -4.3, -8.2) mm with a 6% gain, and the
PET's body outline (SUV > 0.2) matches the CT's (> -400 HU) about as well there as at zero (Dice 0.967 vs 0.963):
a limb looks much the same a few mm along it. The gain criterion, not the estimate, keeps such pairs silent; the
price is that a real PET shift must be large to be seen: the PET moved by 6 mm or 10 mm still reads "cannot
tell" (gains 13% and 22%). Between MR volumes (stroke T1, T2) a shift is found closely: T2 moved by 6.1 mm
reads 6.6 mm (its 0.6 mm reading unmoved included; the move itself within 0.06 mm), T1 moved 6 mm reads 6.0 mm.
"""
from __future__ import annotations

import itertools
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
_SEED = 20261201
_MAX_SHIFT_MM = 16.0  # residual misregistrations worth a warning, not a different body part
_SHIFT_FRACTION = 0.25  # of the overlap's extent along an axis
_MIN_EXTENT_MM = 40.0  # an overlap thinner than this along an axis does not constrain a shift along it
_GRID_STEP_MM = 4.0
_GRID_SAMPLES = 5000
_REFINE_SAMPLES = 20000
_MIN_MASK_VOXELS = 2000
_MIN_GAIN = 0.3  # relative gain of mutual information at the estimate over zero shift
_MIN_MI = 0.05  # nats: below this at the estimate, the images share too little structure to tell


@dataclass(frozen=True)
class RegistrationCheck:
    offset_mm: Optional[float]  # length of the estimated translation of B against A; None: cannot tell
    translation_mm: Tuple[float, ...]  # (x, y, z) in LPS, as SimpleITK's TranslationTransform gives it
    threshold_mm: float
    seconds: float
    gain: float = math.nan  # relative mutual-information gain of the estimate over zero shift
    searched_axes: Tuple[bool, ...] = (True, True, True)  # per voxel axis of A (i, j, k); False: the overlap is
    # too thin along it to constrain a shift, which is then not estimated along it
    cannot_tell: str = ""  # why the check cannot tell (offset None), or why an estimate is not reported

    @property
    def significant(self) -> bool:
        return self.offset_mm is not None and self.gain >= _MIN_GAIN

    @property
    def reported_mm(self) -> Optional[float]:
        """What to report: the offset when it is within the threshold or beats zero shift significantly; None
        when the check cannot tell (a shift above the threshold that the metric barely prefers is no answer)."""
        if self.offset_mm is None or (self.offset_mm > self.threshold_mm and not self.significant):
            return None
        return self.offset_mm

    @property
    def misaligned(self) -> bool:
        return self.significant and self.offset_mm > self.threshold_mm

    def warning(self, name_a: str, name_b: str) -> Optional[str]:
        if not self.misaligned:
            return None
        unsearched = [axis for axis, searched in zip("ijk", self.searched_axes) if not searched]
        only = f" (not along {name_a}'s voxel axis {', '.join(unsearched)}: the overlap is too thin there)" \
            if unsearched else ""
        return (f"'{name_b}' seems shifted by about {self.offset_mm:.1f} mm from '{name_a}'{only}, more than "
                f"{self.threshold_mm:.1f} mm: aligning them by that translation raises their mutual information "
                f"by {100 * self.gain:.0f}%, and the fused image may show doubled structures. Register "
                f"'{name_b}' to '{name_a}' first, e.g. with Slicer's General Registration (BRAINS) or Elastix, "
                f"then fuse.")


def threshold_mm(moving: sitk.Image) -> float:
    return max(MIN_THRESHOLD_MM, max(moving.GetSpacing()))


def _coarse(image: sitk.Image) -> sitk.Image:
    """A small float32 scalar version of the image: block averages (BinShrink) to at most 64 voxels per axis and
    no finer than 2 mm, RGB as BT.601 luma, clipped to its 0.5-99.5 percentiles. Shrinking first keeps the
    memory and time of the check small whatever the input size."""
    size, spacing = np.asarray(image.GetSize()), np.asarray(image.GetSpacing())
    factors = np.maximum(np.ceil(size / _MAX_VOXELS_PER_AXIS), np.round(_MIN_SPACING_MM / spacing))
    factors = [int(f) for f in np.clip(factors, 1, np.maximum(size // 4, 1))]
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
    clipped = np.clip(np.nan_to_num(values, nan=low, posinf=high, neginf=low), low, high)
    out = sitk.GetImageFromArray(clipped.astype(np.float32))
    out.CopyInformation(small)
    return out


def _smoothed_to(image: sitk.Image, sigma_mm: np.ndarray) -> sitk.Image:
    """Gaussian blur that brings the image to a resolution of ``sigma_mm`` (per LPS-aligned index axis; what it
    already has, about half a voxel, is subtracted in quadrature)."""
    own = 0.5 * np.asarray(image.GetSpacing())
    extra = np.sqrt(np.maximum(np.square(sigma_mm) - np.square(own), 0.0))
    if not np.any(extra > 0):
        return image
    if min(image.GetSize()) < 4:  # the recursive filter refuses axes of fewer than 4 voxels (a single slice)
        return sitk.DiscreteGaussian(image, [float(s) ** 2 for s in extra], maximumKernelWidth=64,
                                     useImageSpacing=True)
    return sitk.SmoothingRecursiveGaussian(image, [float(s) for s in np.maximum(extra, 1e-3)])


def _voxel_points(image: sitk.Image) -> np.ndarray:
    """Physical (LPS) coordinates of every voxel, in the numpy array's (z, y, x) order, as an (N, 3) array."""
    size = image.GetSize()
    index = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), -1)  # x, y, z order
    index = index.transpose(2, 1, 0, 3).reshape(-1, 3)
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    return np.asarray(image.GetOrigin()) + (index * np.asarray(image.GetSpacing())) @ direction.T


def _inside(image: sitk.Image, points: np.ndarray) -> np.ndarray:
    """Which physical points fall inside the image's buffer (voxel centres within half a voxel of it)."""
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    index = ((points - np.asarray(image.GetOrigin())) @ direction) / np.asarray(image.GetSpacing())
    return np.all((index >= -0.5) & (index <= np.asarray(image.GetSize()) - 0.5), axis=1)


def _registration(fixed_mask: sitk.Image, sampling: Optional[float], threads: Optional[int]
                  ) -> sitk.ImageRegistrationMethod:
    registration = sitk.ImageRegistrationMethod()
    if threads is not None:
        registration.SetNumberOfThreads(threads)
    registration.SetMetricAsMattesMutualInformation(numberOfHistogramBins=_BINS)
    if sampling is None:
        registration.SetMetricSamplingStrategy(registration.NONE)
    else:
        registration.SetMetricSamplingStrategy(registration.RANDOM)
        registration.SetMetricSamplingPercentage(sampling, _SEED)
    registration.SetMetricFixedMask(fixed_mask)
    registration.SetInterpolator(sitk.sitkLinear)
    return registration


def _metric(fixed, moving, mask, translation, threads) -> float:
    registration = _registration(mask, None, threads)
    registration.SetInitialTransform(sitk.TranslationTransform(3, list(translation)))
    return -registration.MetricEvaluate(fixed, moving)  # Mattes returns minus the mutual information


def _cannot_tell(b, started, why, searched=(True, True, True), translation=(math.nan,) * 3,
                 gain=math.nan) -> RegistrationCheck:
    return RegistrationCheck(None, tuple(float(t) for t in translation), threshold_mm(b),
                             time.perf_counter() - started, float(gain), tuple(bool(s) for s in searched), why)


def check_registration(a: sitk.Image, b: sitk.Image, threads: Optional[int] = None) -> Optional[RegistrationCheck]:
    """Estimate B's rigid translation against A (see the module docstring); None for 2D images. ``threads``: the
    registrations' thread count (None: SimpleITK's default; the engine uses 1 while the fusion runs beside it)."""
    if a.GetDimension() != 3:
        return None
    started = time.perf_counter()
    fixed, moving = _coarse(a), _coarse(b)
    common = 0.5 * np.maximum(np.max(fixed.GetSpacing()), np.max(moving.GetSpacing()))
    fixed, moving = _smoothed_to(fixed, np.full(3, common)), _smoothed_to(moving, np.full(3, common))

    # Work in A's voxel-axis frame (both images rotated by A's inverse direction: their relative geometry is
    # unchanged), so that "thin along an axis" means along A's axes, also for an oblique A or a crop of it.
    frame = np.asarray(a.GetDirection()).reshape(3, 3)
    fixed, moving = _rotated(fixed, frame.T), _rotated(moving, frame.T)
    points = _voxel_points(fixed)
    in_view = _inside(moving, points)
    if np.count_nonzero(in_view) < _MIN_MASK_VOXELS:
        return _cannot_tell(b, started, "the images overlap too little")
    extent = np.ptp(points[in_view], axis=0)
    searched = extent >= _MIN_EXTENT_MM
    bound = np.where(searched, np.minimum(_MAX_SHIFT_MM, _SHIFT_FRACTION * extent), 0.0)
    # Keep only voxels that stay in B's view for every shift in range (the range is a box: its corners suffice).
    stays = in_view.copy()
    for corner in itertools.product(*[(-r, r) for r in bound]):
        stays &= _inside(moving, points + np.asarray(corner))
    if np.count_nonzero(stays) < _MIN_MASK_VOXELS or not np.any(searched):
        return _cannot_tell(b, started, "the overlap is too small or too thin to constrain a shift", searched)
    mask = sitk.GetImageFromArray(stays.reshape(sitk.GetArrayViewFromImage(fixed).shape).astype(np.uint8))
    mask.CopyInformation(fixed)

    sampling = min(1.0, _GRID_SAMPLES / np.count_nonzero(stays))
    steps = [int(r // _GRID_STEP_MM) for r in bound]
    grid = _registration(mask, sampling, threads)
    grid.SetOptimizerAsExhaustive(steps, stepLength=_GRID_STEP_MM)
    grid.SetOptimizerScales([1.0, 1.0, 1.0])
    grid.SetInitialTransform(sitk.TranslationTransform(3), inPlace=False)
    try:
        best = np.asarray(sitk.TranslationTransform(_only(grid.Execute(fixed, moving))).GetOffset())
        refine = _registration(mask, min(1.0, _REFINE_SAMPLES / np.count_nonzero(stays)), threads)
        refine.SetOptimizerAsRegularStepGradientDescent(learningRate=_GRID_STEP_MM / 2, minStep=0.05,
                                                       numberOfIterations=100, relaxationFactor=0.6,
                                                       gradientMagnitudeTolerance=1e-8)
        refine.SetOptimizerScales([1.0, 1.0, 1.0])
        refine.SetOptimizerWeights([float(s) for s in searched])
        refine.SetInitialTransform(sitk.TranslationTransform(3, list(best)), inPlace=False)
        refined = np.asarray(sitk.TranslationTransform(_only(refine.Execute(fixed, moving))).GetOffset())
        if np.all(np.abs(refined) <= bound + 1e-6):
            best = refined
        mi_best = _metric(fixed, moving, mask, best, threads)
        mi_zero = _metric(fixed, moving, mask, (0.0, 0.0, 0.0), threads)
    except RuntimeError:  # too little overlap or signal for the metric: report nothing rather than guess
        return _cannot_tell(b, started, "the metric could not be evaluated", searched)
    gain = (mi_best - mi_zero) / max(mi_zero, 1e-12)
    if not mi_best >= _MIN_MI:
        return _cannot_tell(b, started, "the images share too little structure", searched)
    if np.any(searched & (np.abs(best) >= bound - 0.5 * _GRID_STEP_MM)):  # the best may lie beyond the range
        return _cannot_tell(b, started, "the best shift is at the edge of the range searched", searched,
                            frame @ best, gain)
    offset = float(np.linalg.norm(best))
    best = frame @ best  # back to LPS
    weak = "the shift found barely improves the metric over none" if offset > threshold_mm(b) and \
        gain < _MIN_GAIN else ""
    return RegistrationCheck(offset, tuple(float(t) for t in best), threshold_mm(b),
                             time.perf_counter() - started, float(gain), tuple(bool(s) for s in searched), weak)


def _rotated(image: sitk.Image, rotation: np.ndarray) -> sitk.Image:
    """A copy of the image with its physical space rotated about the origin of LPS."""
    out = sitk.Image(image)
    out.SetOrigin(tuple(float(v) for v in rotation @ np.asarray(image.GetOrigin())))
    out.SetDirection(tuple(float(v) for v in (rotation @ np.asarray(image.GetDirection()).reshape(3, 3)).ravel()))
    return out


def _only(transform: sitk.Transform) -> sitk.Transform:
    """The translation inside what Execute returns (a CompositeTransform when the initial one was not in place)."""
    return transform.GetNthTransform(0) if hasattr(transform, "GetNthTransform") else transform
