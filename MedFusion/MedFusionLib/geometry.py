"""Physical geometry: resampling onto the reference grid and anatomical slicing axes.

SimpleITK images live in LPS physical space: ``direction`` columns are the directions of the index axes
i, j, k; numpy arrays from SimpleITK are indexed [k, j, i].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np
import SimpleITK as sitk

from .errors import InputError

# Anatomical axis -> the LPS physical axis its slices are perpendicular to.
_SLICE_NORMAL = {"sagittal": 0, "coronal": 1, "axial": 2}
_GEOMETRY_TOLERANCE = 1e-5


def same_grid(a: sitk.Image, b: sitk.Image, tolerance: float = _GEOMETRY_TOLERANCE) -> bool:
    return (a.GetSize() == b.GetSize()
            and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tolerance)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tolerance)
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=tolerance))


def resample_onto(moving: sitk.Image, reference: sitk.Image, default: float) -> sitk.Image:
    """Linear resampling of ``moving`` onto ``reference``'s grid in physical space.

    Points outside the moving image's field of view get ``default`` (callers pass a sentinel such as -1 so
    the overlap can be measured from the same pass). Vector images are interpolated per component.
    """
    return sitk.Resample(moving, reference, sitk.Transform(), sitk.sitkLinear, float(default),
                         moving.GetPixelID())


def index_to_physical_axes(image: sitk.Image) -> Tuple[int, ...]:
    """For each index axis (i, j, k), the LPS axis it runs along most closely, as a permutation.

    Assignment is greedy by alignment strength, so a strongly oblique grid (say 40 degrees) still gets each
    physical axis exactly once.
    """
    dim = image.GetDimension()
    direction = np.abs(np.array(image.GetDirection()).reshape(dim, dim))  # rows: physical, cols: index
    assignment = [-1] * dim
    used_physical = set()
    for flat in np.argsort(-direction, axis=None):
        physical, index = divmod(int(flat), dim)
        if assignment[index] == -1 and physical not in used_physical:
            assignment[index] = physical
            used_physical.add(physical)
    return tuple(assignment)


def check_axis(axis: str) -> str:
    """'Axial ' -> 'axial'; an unknown axis is one sentence."""
    key = (axis or "").strip().lower()
    if key not in _SLICE_NORMAL:
        raise InputError(f"Unknown slicing axis '{axis}'; choose axial, coronal or sagittal.")
    return key


def slice_array_axis(image: sitk.Image, axis: str) -> int:
    """The numpy axis (of the [k, j, i] array) to slice along to get ``axis`` slices of this volume."""
    key = check_axis(axis)
    if image.GetDimension() == 2:
        return 0  # a 2D image is a single slice, whatever the axis
    index_axis = index_to_physical_axes(image).index(_SLICE_NORMAL[key])
    return image.GetDimension() - 1 - index_axis


# Screen orientation of each plane, radiological convention: (physical axis, sign) of the rows and of the
# columns. Rows run anterior->posterior (axial) or superior->inferior (coronal, sagittal); columns run
# patient right->left (axial, coronal) or anterior->posterior (sagittal).
_SCREEN = {"axial": ((1, +1), (0, +1)), "coronal": ((2, -1), (0, +1)), "sagittal": ((2, -1), (1, +1))}


@dataclass(frozen=True)
class SliceLayout:
    """How to cut a volume into slices of one plane, each in the same anatomical orientation.

    Networks are not transpose- or flip-invariant, so every slice reaches a method in the radiological
    orientation of its plane (the orientation of the Harvard training images for axial slices), whatever
    order the voxels are stored in. Only views are made: no copies.
    """
    array_axis: int  # numpy axis of the [k, j, i] array that is sliced
    transpose: bool  # swap the two in-plane axes
    flip_rows: bool
    flip_cols: bool
    two_d: bool = False

    def to_slices(self, array: np.ndarray) -> np.ndarray:
        """[k, j, i] (or [y, x] for 2D) -> (S, H, W) view in screen orientation."""
        if self.two_d:
            return array[np.newaxis]
        stack = np.moveaxis(array, self.array_axis, 0)
        if self.transpose:
            stack = np.swapaxes(stack, 1, 2)
        if self.flip_rows:
            stack = stack[:, ::-1]
        if self.flip_cols:
            stack = stack[:, :, ::-1]
        return stack

    def from_slices(self, stack: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_slices`."""
        if self.two_d:
            return stack[0]
        if self.flip_cols:
            stack = stack[:, :, ::-1]
        if self.flip_rows:
            stack = stack[:, ::-1]
        if self.transpose:
            stack = np.swapaxes(stack, 1, 2)
        return np.moveaxis(stack, 0, self.array_axis)

    def spacing(self, image: sitk.Image) -> Tuple[float, float]:
        """(row, column) pixel spacing in mm of the slices."""
        if self.two_d:
            return image.GetSpacing()[1], image.GetSpacing()[0]
        in_plane = [2 - a for a in range(3) if a != self.array_axis]  # index axes of the kept array axes
        if self.transpose:
            in_plane = in_plane[::-1]
        return image.GetSpacing()[in_plane[0]], image.GetSpacing()[in_plane[1]]


def slice_layout(image: sitk.Image, axis: str) -> SliceLayout:
    array_axis = slice_array_axis(image, axis)
    if image.GetDimension() == 2:
        return SliceLayout(0, False, False, False, two_d=True)
    physical_of_index = index_to_physical_axes(image)
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    kept = [a for a in range(3) if a != array_axis]  # array axes left in a slice, in storage order
    (row_phys, row_sign), (col_phys, col_sign) = _SCREEN[axis.strip().lower()]
    transpose = physical_of_index[2 - kept[0]] != row_phys
    row_index, col_index = [2 - a for a in (kept[::-1] if transpose else kept)]
    return SliceLayout(
        array_axis=array_axis, transpose=transpose,
        flip_rows=bool(np.sign(direction[row_phys, row_index]) != row_sign),
        flip_cols=bool(np.sign(direction[col_phys, col_index]) != col_sign))


def index_matrix(image: sitk.Image) -> np.ndarray:
    """Index -> physical linear map (direction times spacing), as a (dim, dim) float64 matrix."""
    dim = image.GetDimension()
    return np.asarray(image.GetDirection(), np.float64).reshape(dim, dim) @ np.diag(image.GetSpacing())


def index_map(moving: sitk.Image, reference: sitk.Image) -> Tuple[np.ndarray, np.ndarray]:
    """(affine, offset): the moving image's continuous index of the reference's index i is affine @ i + offset."""
    to_moving = np.linalg.inv(index_matrix(moving))
    offset = to_moving @ (np.asarray(reference.GetOrigin(), np.float64) - np.asarray(moving.GetOrigin(), np.float64))
    return to_moving @ index_matrix(reference), offset


def fields_of_view_may_overlap(reference: sitk.Image, moving: sitk.Image) -> bool:
    """False only when the two fields of view certainly do not intersect (exact, corners only).

    The moving image's field of view (voxel centres +- half a voxel, as the interpolator sees it) is a
    parallelepiped; its bounding box in the reference's continuous index space is disjoint from the
    reference's extent exactly when no resampled voxel can fall inside it.
    """
    dim = reference.GetDimension()
    size = np.asarray(moving.GetSize(), dtype=float)
    corners = np.array(np.meshgrid(*[(-0.5, n - 0.5) for n in size], indexing="ij")).reshape(dim, -1)
    physical = np.asarray(moving.GetOrigin())[:, None] + index_matrix(moving) @ corners
    in_reference = np.linalg.solve(index_matrix(reference), physical - np.asarray(reference.GetOrigin())[:, None])
    low, high = in_reference.min(axis=1), in_reference.max(axis=1)
    extent = np.asarray(reference.GetSize(), dtype=float) - 1.0
    return bool(np.all(high >= -0.5) and np.all(low <= extent + 0.5))
