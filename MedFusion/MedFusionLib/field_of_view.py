"""Field-of-view aware fusion: where only A has data, the output is A's normalised image, unchanged.

"Only A has data" means outside B's field of view, or where B is masked with NaN (B on another grid than A:
resampled NaN voxels are no data; on A's own grid, NaN voxels are read as 0).

Outside B's field of view a method would otherwise fuse A with zeros (average halves A, GFF dims it to ~73%),
which draws a hard seam along B's border. Two steps remove it:

1. the method sees B filled with A where B has no data, so a network's receptive field near the border sees
   "both sources agree" rather than a black cliff;
2. the output is blended back to A with a weight that is 0 outside B's field of view and at its outermost
   voxel centres, and rises linearly to 1 over ``RAMP_VOXELS`` voxels of A inward (per axis of B, in mm), so
   the fusion fades in and no step appears at the border.

The weight is computed analytically from the two grids (B's continuous index is affine in A's voxel index),
so it costs no volume-sized array, gives every voxel the same weight whatever its batch, and works along any
slicing axis.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import SimpleITK as sitk

from .geometry import index_map, index_matrix

# Width of the fade-in, in voxels of A along each axis of B: wide enough that the fused-minus-A difference
# spreads over several voxels (measured on sts_001 CT + MR: see Testing/test_field_of_view.py).
RAMP_VOXELS = 8.0


def _ramp_mm(reference: sitk.Image, moving: sitk.Image) -> np.ndarray:
    """Ramp length along each of B's axes: RAMP_VOXELS times A's voxel extent in that direction."""
    dim = reference.GetDimension()
    axes_b = np.asarray(moving.GetDirection(), np.float64).reshape(dim, dim)  # columns: B's axis directions
    steps_a = index_matrix(reference)  # columns: A's voxel steps in mm
    extent = np.abs(axes_b.T @ steps_a).max(axis=1)  # largest A voxel step projected on each B axis
    return RAMP_VOXELS * np.maximum(extent, 1e-6)


def border_weight(grid: sitk.Image, moving: sitk.Image, reference: sitk.Image) -> np.ndarray:
    """Weight in [0, 1] for every voxel of ``grid`` (a sub-grid of A), in SimpleITK array order.

    0 outside B's field of view and on B's outermost voxel centres, 1 at least ``RAMP_VOXELS`` voxels of A
    inside it; linear in between.
    """
    dim = grid.GetDimension()
    size = grid.GetSize()
    # B's continuous index is affine in A's index: continuous = affine @ index + offset, so each of B's axes is a
    # sum of broadcast 1D terms and only slab-sized arrays are made. Indices are A's own (the slab's first
    # index added), so a voxel gets the same weight whatever batch it falls in.
    first = np.rint(reference.TransformPhysicalPointToContinuousIndex(grid.GetOrigin()))
    affine, offset = index_map(moving, reference)
    # index axis p (x, y[, z]) varies along array axis dim - 1 - p of SimpleITK's (z, y, x) order
    axes = [(first[p] + np.arange(n, dtype=np.float64)).reshape([-1 if a == dim - 1 - p else 1 for a in range(dim)])
            for p, n in enumerate(size)]
    n_b = np.asarray(moving.GetSize(), np.float64)
    ramp = _ramp_mm(reference, moving)
    weight = np.ones(tuple(size[::-1]), np.float32)
    for q in range(dim):
        # Only the index axes that move B's axis q (all of them for an oblique B, one for B parallel to A): the
        # sum then stays as small as its broadcast shape, a row or a plane instead of the slab, and the
        # minimum below broadcasts it (on a 512 x 512 CT it was half the fixed cost of a fusion).
        moving_axes = [p for p in range(dim) if abs(affine[q, p]) * (abs(first[p]) + size[p]) > 1e-9] or [0]
        continuous = offset[q] + sum(affine[q, p] * axes[p] for p in moving_axes)
        # Distance inside B along its axis q, in its voxels: to the outermost voxel centres, or to the voxel's
        # half-width for an axis of one voxel (a single slice).
        low, high = (0.0, n_b[q] - 1.0) if n_b[q] > 1 else (-0.5, 0.5)
        inside = np.minimum(continuous - low, high - continuous) * (moving.GetSpacing()[q] / ramp[q])
        np.minimum(weight, np.clip(inside, 0.0, 1.0), out=weight)
    return weight


def _mask_ramp(inside: np.ndarray) -> np.ndarray:
    """In-plane fade-in from the border of a data mask (e.g. B's NaN-masked voxels), slice by slice."""
    import cv2

    ramp = np.empty(inside.shape, np.float32)
    for index, mask in enumerate(inside):
        distance = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)  # 1 on the first voxel inside
        ramp[index] = np.clip((distance - 1.0) / RAMP_VOXELS, 0.0, 1.0)
    return ramp


def slab_weight(moving_slabs, start: int, end: int, inside: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
    """The border weight of slices [start, end) in the slab layout (n, H, W), or None when B covers A.

    ``inside`` (the slab's mask of voxels where B has data) adds an in-plane fade-in wherever B has no data
    inside its field of view (NaN voxels of a masked B).
    """
    if moving_slabs.same_grid:
        return None
    grid = moving_slabs._sub_grid(start, end)
    weight = moving_slabs.layout.to_slices(border_weight(grid, moving_slabs.source.image, moving_slabs.reference))
    if inside is not None and not np.array_equal(inside, weight > 0):
        weight = np.minimum(weight, _mask_ramp(inside))
    return np.ascontiguousarray(weight)


def method_input_b(luma_a: np.ndarray, luma_b: np.ndarray, inside: Optional[np.ndarray]) -> np.ndarray:
    """B as the method sees it: B where it has data, A elsewhere (no black cliff at the border)."""
    if inside is None:
        return luma_b
    return np.where(inside, luma_b, luma_a).astype(np.float32, copy=False)


def blend_to_reference(fused: np.ndarray, luma_a: np.ndarray, weight: Optional[np.ndarray]) -> np.ndarray:
    """Fused where B has data, fading to exactly A across B's border (weight 0 -> A, 1 -> fused)."""
    if weight is None:
        return fused
    return (luma_a + weight * (fused - luma_a)).astype(np.float32, copy=False)
