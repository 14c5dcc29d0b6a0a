"""Warnings worth reading: each one fires only when the user should act, and says what to do.

The engine asks twice: :func:`about_inputs` before fusing (a labelmap given as an image; a functional volume
given as the reference A) and :func:`about_overlap` after (too little of A inside B's field of view). The
thresholds are stated here, tested on the shared volumes (Testing/test_advice.py) to fire on the cases below
and to stay silent on ordinary pairs (sts_001 CT + PET, the stroke T1 + T2, the demo phantom):

* overlap: sts_001 CT + MR (the MR covers about 60-80% of the CT) warns; CT + PET (one PET/CT scan) and the
  demo (99% overlap: only the oblique MR's corners miss the CT) do not;
* labelmap: sts_001 ``CT_mask.nii.gz`` (values 0 and 1) warns; 8-bit MR with 240 grey levels does not;
* functional A: sts_001 PET as A (SUV, voxels 4.7 mm beside the CT's 0.98 mm) and a Harvard pseudo-colour PET
  as A beside its MRI warn; CT as A, or the MRI as A beside the colour PET, does not.
"""
from __future__ import annotations

from typing import List

import numpy as np
import SimpleITK as sitk

from .intensity import _sample  # the same strided sample the intensity windows are computed from

# Below this fraction of A's voxels inside B's field of view the fused volume is largely A alone.
OVERLAP_WARN_BELOW = 0.90
# An image of integers with at most this many distinct values is a labelmap or mask, not an intensity image.
MAX_LABELS = 16
# A is "much coarser" than B when its voxels are this many times larger per axis (geometric mean).
COARSER_BY = 1.5


def about_overlap(overlap: float, name_a: str, name_b: str) -> List[str]:
    if overlap >= OVERLAP_WARN_BELOW:
        return []
    return [f"Only {100 * overlap:.0f}% of '{name_a}' lies inside the field of view of '{name_b}' (below "
            f"{100 * OVERLAP_WARN_BELOW:.0f}%): elsewhere '{name_b}' is 0, so the fused image holds "
            f"'{name_a}' only. If both should cover the same anatomy, check that they are registered and share a frame of "
            f"reference; otherwise crop '{name_a}' to the common region first."]


def distinct_labels(image: sitk.Image) -> int:
    """How many distinct values a scalar image holds if they are all integers (from a sample), else 0."""
    view = sitk.GetArrayViewFromImage(image)
    if view.ndim != image.GetDimension():  # a vector (RGB) image is never a labelmap
        return 0
    sample = _sample(view)
    if np.issubdtype(sample.dtype, np.floating):
        sample = sample[np.isfinite(sample)]
        if sample.size == 0 or np.any(sample != np.round(sample)):
            return 0
    return int(np.unique(sample).size)


def _labelmap_warning(image: sitk.Image, name: str) -> List[str]:
    n = distinct_labels(image)
    if not 2 <= n <= MAX_LABELS:  # one value: a constant image, which the intensity step rejects
        return []
    kind = "a binary mask" if n == 2 else "a labelmap"
    return [f"'{name}' holds only {n} distinct integer values: it looks like {kind} (a segmentation), not an "
            f"image. Fuse the image it was drawn on instead, and show the mask as a segmentation or overlay."]


def voxel_ratio(a: sitk.Image, b: sitk.Image) -> float:
    """How many times larger A's voxels are than B's, per axis (geometric mean over the axes)."""
    return float(np.prod(np.divide(a.GetSpacing(), b.GetSpacing())) ** (1.0 / a.GetDimension()))


def _functional_reference_warning(a: sitk.Image, b: sitk.Image, a_is_colour: bool, b_is_colour: bool,
                                  name_a: str, name_b: str) -> List[str]:
    """A functional image given as A: a colour one beside a grey B, or non-negative uptake much coarser than B."""
    if b_is_colour:
        return []
    if a_is_colour:  # e.g. a pseudo-colour PET as A: the networks treat B as the functional source (EDPSN's EEM)
        return [f"'{name_a}' is a colour (functional) image given as A, beside the grey '{name_b}': MedFusion takes "
                f"A as the anatomical reference and B as the functional source (networks such as EDPSN enhance B as "
                f"such). Give '{name_b}' as A and '{name_a}' as B."]
    ratio = voxel_ratio(a, b)
    if ratio < COARSER_BY:
        return []
    if not a_is_colour:
        sample = _sample(sitk.GetArrayViewFromImage(a))
        sample = sample[np.isfinite(sample)]
        if sample.size == 0 or sample.min() < 0:  # CT (negative HU) is anatomy, whatever its grid
            return []
    return [f"'{name_a}' looks like a functional volume (PET/SPECT: non-negative uptake, {_mm(a)} voxels beside "
            f"{_mm(b)} in '{name_b}'), and the fused volume takes the grid of A: '{name_b}' loses its detail. "
            f"Give the anatomical volume (CT or MR) as A and the functional one as B."]


def _mm(image: sitk.Image) -> str:
    return " x ".join(f"{s:.1f}" for s in image.GetSpacing()) + " mm"


def about_inputs(a: sitk.Image, b: sitk.Image, a_is_colour: bool, b_is_colour: bool,
                 name_a: str, name_b: str) -> List[str]:
    """Warnings about what the two inputs are, before fusing them."""
    warnings = _labelmap_warning(a, name_a) + _labelmap_warning(b, name_b)
    return warnings + _functional_reference_warning(a, b, a_is_colour, b_is_colour, name_a, name_b)
