"""Volume nodes <-> SimpleITK images, with the RAS (Slicer) / LPS (ITK, DICOM) conversion done once, here.

Slicer stores a volume's geometry in the node, as a 4x4 IJK-to-RAS matrix; its ``vtkImageData`` holds only the
voxels (origin 0, spacing 1). SimpleITK images live in LPS: ``origin`` / ``spacing`` / ``direction`` such that

    point_LPS = origin + direction @ diag(spacing) @ (i, j, k)

RAS and LPS differ by the sign of the first two axes, so with ``F = diag(-1, -1, 1)``:

    IJK-to-LPS = F @ IJK-to-RAS      (the 3x3 part and the translation alike)

``spacing`` is the length of each column of the 3x3 part and ``direction`` the columns divided by it. Nothing
here needs the Slicer application or Qt: only MRML classes and VTK (``slicer-core`` provides both).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import SimpleITK as sitk

from .errors import InputError

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def matrix_to_numpy(matrix) -> np.ndarray:
    """A vtkMatrix4x4 as a (4, 4) float64 array."""
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=np.float64)


def numpy_to_matrix(array: np.ndarray):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def ijk_to_ras(node) -> np.ndarray:
    """The node's own IJK-to-RAS matrix (its parent transform is NOT applied)."""
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return matrix_to_numpy(matrix)


def lps_geometry(ijk_to_ras_matrix: np.ndarray):
    """(origin, spacing, direction) of SimpleITK for an IJK-to-RAS matrix."""
    ijk_to_lps = RAS_TO_LPS @ np.asarray(ijk_to_ras_matrix, dtype=np.float64)
    axes = ijk_to_lps[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    if np.any(spacing <= 0) or abs(np.linalg.det(axes)) < 1e-12:
        raise InputError("A volume's IJK-to-RAS matrix is singular (a zero spacing or collapsed axes); "
                         "its geometry cannot be used.")
    direction = axes / spacing
    return tuple(ijk_to_lps[:3, 3]), tuple(spacing), tuple(direction.ravel())


def ras_matrix_from_sitk(image: sitk.Image) -> np.ndarray:
    """The IJK-to-RAS matrix of a 3D SimpleITK image (inverse of :func:`lps_geometry`)."""
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, :3] = direction * np.asarray(image.GetSpacing(), dtype=np.float64)
    ijk_to_lps[:3, 3] = image.GetOrigin()
    return RAS_TO_LPS @ ijk_to_lps  # RAS_TO_LPS is its own inverse


def array_from_image_data(image, name: str = "volume") -> np.ndarray:
    """A copy of a vtkImageData's voxels as a (K, J, I) or (K, J, I, C) array."""
    from vtk.util import numpy_support

    if image is None or image.GetPointData() is None or image.GetPointData().GetScalars() is None:
        raise InputError(f"Volume '{name}' has no voxel data.")
    i, j, k = image.GetDimensions()
    components = image.GetNumberOfScalarComponents()
    flat = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    shape = (k, j, i) if components == 1 else (k, j, i, components)
    return np.array(flat.reshape(shape), copy=True)


def voxel_array(node) -> np.ndarray:
    """A copy of the node's voxels as a (K, J, I) or (K, J, I, C) array."""
    if node is None:
        raise InputError("No volume given.")
    return array_from_image_data(node.GetImageData(), node.GetName())


def _extent_offset(node) -> np.ndarray:
    """IJK index of the first voxel (Slicer volumes start at 0, but a vtkImageData extent may not)."""
    extent = node.GetImageData().GetExtent()
    return np.array([extent[0], extent[2], extent[4]], dtype=np.float64)


def volume_node_to_sitk(node, ijk_to_ras_matrix: Optional[np.ndarray] = None) -> sitk.Image:
    """The node's voxels as a SimpleITK image in LPS.

    ``ijk_to_ras_matrix`` replaces the node's own IJK-to-RAS (used to express a volume in another node's
    coordinate frame, e.g. with its parent transform applied); the node itself is never modified.
    """
    array = voxel_array(node)
    components = node.GetImageData().GetNumberOfScalarComponents()
    if array.dtype == np.int64 and components == 1 and np.abs(array).max(initial=0) < 2**31:
        array = array.astype(np.int32)
    image = sitk.GetImageFromArray(array, isVector=components > 1)
    matrix = ijk_to_ras(node) if ijk_to_ras_matrix is None else np.asarray(ijk_to_ras_matrix, dtype=np.float64)
    offset = _extent_offset(node)
    if np.any(offset):
        matrix = matrix.copy()
        matrix[:3, 3] = matrix[:3, :3] @ offset + matrix[:3, 3]
    origin, spacing, direction = lps_geometry(matrix)
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    return image


def image_data_from_array(array: np.ndarray, components: int = 1):
    """A new vtkImageData (origin 0, spacing 1, as Slicer expects) holding a copy of ``array``."""
    import vtk
    from vtk.util import numpy_support

    array = np.ascontiguousarray(array)
    if components == 1:
        k, j, i = array.shape
    else:
        k, j, i, c = array.shape
        if c != components:
            raise ValueError(f"expected {components} components, got {c}")
    image = vtk.vtkImageData()
    image.SetDimensions(i, j, k)
    scalars = numpy_support.numpy_to_vtk(array.reshape(-1, components), deep=True)
    scalars.SetName("ImageScalars")
    image.GetPointData().SetScalars(scalars)
    return image


def set_volume_from_sitk(node, image: sitk.Image, ijk_to_ras_matrix: Optional[np.ndarray] = None) -> None:
    """Fill ``node`` with the image's voxels; its geometry is ``ijk_to_ras_matrix`` or the image's own."""
    components = image.GetNumberOfComponentsPerPixel()
    array = sitk.GetArrayFromImage(image)
    if array.ndim == 2:  # a 2D image becomes a one-slice volume
        array = array[np.newaxis]
    elif array.ndim == 3 and components > 1:
        array = array[np.newaxis]
    matrix = ras_matrix_from_sitk(image) if ijk_to_ras_matrix is None else ijk_to_ras_matrix
    node.SetIJKToRASMatrix(numpy_to_matrix(np.asarray(matrix, dtype=np.float64)))
    node.SetAndObserveImageData(image_data_from_array(array, components))


def add_volume_from_sitk(scene, image: sitk.Image, name: str):
    """A new scalar (or, for 3 components, vector) volume node in ``scene`` holding ``image``."""
    import slicer

    vector = image.GetNumberOfComponentsPerPixel() > 1
    node = slicer.vtkMRMLVectorVolumeNode() if vector else slicer.vtkMRMLScalarVolumeNode()
    node.SetName(scene.GenerateUniqueName(name))
    scene.AddNode(node)
    set_volume_from_sitk(node, image)
    node.CreateDefaultDisplayNodes()
    return node


def colour_table_of(colour_node, entries: int = 256) -> np.ndarray:
    """(entries, 3) RGB in [0, 1] sampled evenly over a colour node's range.

    ``GetScalarsToColors`` serves table nodes (Grey, Iron, Rainbow ...) and procedural ones (PET-Heat,
    PET-Rainbow ...) alike, so a volume is coloured exactly as its display node shows it.
    """
    scalars_to_colours = colour_node.GetScalarsToColors() if colour_node is not None else None
    if scalars_to_colours is None:
        raise InputError(f"Colour node '{colour_node.GetName() if colour_node else None}' has no colours.")
    low, high = scalars_to_colours.GetRange()
    rgb = [0.0, 0.0, 0.0]
    table = np.zeros((entries, 3), np.float32)
    for index, value in enumerate(np.linspace(low, high, entries)):
        scalars_to_colours.GetColor(float(value), rgb)
        table[index] = rgb
    return table


def display_window_preset(node):
    """The node's displayed window as a manual intensity Preset (numbers kept as numbers, not written into a
    'manual:LOW:HIGH' text to be parsed back), or None without a usable display."""
    from .intensity import Preset

    display = node.GetDisplayNode() if node is not None else None
    if display is None or not hasattr(display, "GetWindow") or display.GetWindow() <= 0:
        return None
    half = display.GetWindow() / 2.0
    low, high = display.GetLevel() - half, display.GetLevel() + half
    return Preset("manual", window=(low, high), text=f"manual {low:g}..{high:g}")
