"""How a fused volume behaves where only A has data: the field-of-view seam check of issue 13.

Two figures per fusion, on arrays in A's geometry (fused luma, A normalised, B's field-of-view mask):

- ``outside_error``: mean |fused - A| over the voxels outside B's field of view (0 = A passes unchanged);
- ``border_step`` vs ``border_step_a``: mean |difference| between the two voxels of every adjacent pair that
  straddles the field-of-view border (along each array axis), in the fused image and in A itself. A seam shows
  as a fused step larger than A's own. ``ring_step`` / ``ring_step_a`` do the same for the pairs up to
  ``ring`` voxels inside the border (where the fusion fades in), so a seam moved inward is caught as well;
  ``interior_step`` is the fused image's own step on the next ``ring`` voxels inward (its texture, for scale).
"""
from __future__ import annotations

from typing import Dict

import numpy as np
import SimpleITK as sitk


def field_of_view_mask(moving: sitk.Image, reference: sitk.Image) -> np.ndarray:
    """Bool array on the reference grid: True where ``moving`` has data (its grid resampled, linear, no fill)."""
    ones = sitk.Image(moving.GetSize(), sitk.sitkFloat32) + 1.0
    ones.CopyInformation(moving)
    covered = sitk.Resample(ones, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(covered) > 0.5


def _pair_steps(volume: np.ndarray, select) -> list:
    steps = []
    for axis in range(volume.ndim):
        if volume.shape[axis] < 2:
            continue
        low = [slice(None)] * volume.ndim
        high = [slice(None)] * volume.ndim
        low[axis], high[axis] = slice(0, -1), slice(1, None)
        pairs = select(tuple(low), tuple(high))
        steps.append(np.abs(volume[tuple(high)] - volume[tuple(low)])[pairs])
    return steps


def seam_figures(fused: np.ndarray, reference: np.ndarray, inside: np.ndarray, ring: int = 10) -> Dict[str, float]:
    """The figures above for float arrays in [0, 1] (fused luma, A normalised) and B's field-of-view mask."""
    import cv2

    if inside.all() or not inside.any():
        raise ValueError("B's field of view must cover part of A, not all or none of it.")
    fused = np.asarray(fused, np.float32)
    reference = np.asarray(reference, np.float32)
    kernel = np.ones((3, 3), np.uint8)
    # Voxels of B's field of view within ``ring`` voxels of its border, slice by slice along the first axis.
    def eroded(mask, times):
        return np.stack([cv2.erode(s.astype(np.uint8), kernel, iterations=times, borderValue=1) > 0 for s in mask])

    core = eroded(inside, ring)
    band = inside & ~core
    deeper = core & ~eroded(inside, 2 * ring)

    def straddles(low, high):
        return inside[low] != inside[high]

    def in_ring(low, high):
        return (band[low] | band[high]) & ~straddles(low, high)

    def in_deeper(low, high):
        return deeper[low] & deeper[high]

    def mean(steps):
        values = np.concatenate([s.ravel() for s in steps])
        return float(values.mean()) if values.size else 0.0

    return {
        "outside_error": float(np.abs(fused - reference)[~inside].mean()),
        "border_step": mean(_pair_steps(fused, straddles)),
        "border_step_a": mean(_pair_steps(reference, straddles)),
        "ring_step": mean(_pair_steps(fused, in_ring)),
        "ring_step_a": mean(_pair_steps(reference, in_ring)),
        "interior_step": mean(_pair_steps(fused, in_deeper)),
    }
