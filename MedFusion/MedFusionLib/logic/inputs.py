"""MRML inputs: the checks of the selected nodes and B expressed in A's frame (linear transforms folded into
B's geometry, non-linear ones resampled with vtkImageReslice), read as SimpleITK images. The user's nodes are
never hardened, cloned into the scene or otherwise modified.
"""
from __future__ import annotations

import logging
from typing import List

import numpy as np

from ..errors import InputError
from .parameters import COLOUR_NONE, COLOUR_OWN

log = logging.getLogger(__name__)


class InputsMixin:
    """MedFusionLogic's input side: node checks and MRML -> SimpleITK."""

    # ---------------------------------------------------------------- validation ----------------------------
    @staticmethod
    def _check_input(node, label: str):
        if node is None:
            raise InputError(f"Select volume {label}.")
        name = node.GetName()
        if not node.IsA("vtkMRMLVolumeNode"):
            raise InputError(f"'{name}' is not a volume; select an image volume as volume {label}.")
        if node.IsA("vtkMRMLLabelMapVolumeNode"):
            raise InputError(f"'{name}' is a labelmap (a segmentation), not an image; select an image volume "
                             f"as volume {label}.")
        if node.IsA("vtkMRMLDiffusionImageVolumeNode") or node.IsA("vtkMRMLDiffusionWeightedVolumeNode"):
            raise InputError(f"'{name}' is a diffusion volume; MedFusion fuses scalar or RGB volumes.")
        if node.GetScene() is None:
            raise InputError(f"Volume '{name}' is not in a scene.")
        image = node.GetImageData()
        if image is None or image.GetPointData() is None or image.GetPointData().GetScalars() is None:
            raise InputError(f"Volume '{name}' has no voxel data.")
        if 0 in image.GetDimensions():
            raise InputError(f"Volume '{name}' is empty.")
        components = image.GetNumberOfScalarComponents()
        if components not in (1, 3):
            raise InputError(f"Volume '{name}' has {components} components per voxel; MedFusion fuses scalar "
                             f"or RGB (3-component) volumes.")

    def _validate(self, volumeA, volumeB, outputVolume, outputEdges):
        self._check_input(volumeA, "A (the reference)")
        self._check_input(volumeB, "B")
        if volumeA is volumeB or volumeA.GetID() == volumeB.GetID():
            raise InputError(f"Volume A and volume B are the same volume '{volumeA.GetName()}'; "
                             f"select two different volumes.")
        if volumeA.GetScene() is not volumeB.GetScene():
            raise InputError("Volumes A and B belong to different scenes.")
        if outputVolume is not None:
            if not outputVolume.IsA("vtkMRMLScalarVolumeNode") or outputVolume.IsA("vtkMRMLLabelMapVolumeNode") \
                    or outputVolume.IsA("vtkMRMLDiffusionImageVolumeNode") \
                    or outputVolume.IsA("vtkMRMLDiffusionWeightedVolumeNode"):
                raise InputError(f"Output '{outputVolume.GetName()}' is not a scalar or vector volume; select one, "
                                 f"or none to create a new volume.")
            if outputVolume.GetID() in (volumeA.GetID(), volumeB.GetID()):
                raise InputError(f"The output volume '{outputVolume.GetName()}' is one of the inputs; inputs are "
                                 f"never overwritten: select another output or none to create a new volume.")
        if outputEdges is not None and not outputEdges.IsA("vtkMRMLSegmentationNode"):
            raise InputError(f"Edge output '{outputEdges.GetName()}' is not a segmentation; select a "
                             f"segmentation or none to create a new one.")

    # ---------------------------------------------------------------- geometry ------------------------------
    @staticmethod
    def _b_in_frame_of_a(volumeA, volumeB):
        """(4x4 matrix from B's local RAS to A's local RAS, or None when that transform is non-linear)."""
        import slicer
        import vtk

        from ..mrml_convert import matrix_to_numpy

        general = vtk.vtkGeneralTransform()
        slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(
            volumeB.GetParentTransformNode(), volumeA.GetParentTransformNode(), general)
        linear = vtk.vtkTransform()
        if slicer.vtkMRMLTransformNode.IsGeneralTransformLinear(general, linear):
            return matrix_to_numpy(linear.GetMatrix())
        return None

    @staticmethod
    def _resample_b_nonlinear(volumeA, volumeB, warnings: List[str]):
        """B resampled onto A's grid through a non-linear transform chain (vtkImageReslice, linear)."""
        import SimpleITK as sitk
        import slicer
        import vtk

        from ..mrml_convert import array_from_image_data, ijk_to_ras, numpy_to_matrix

        a_to_b = vtk.vtkGeneralTransform()  # A's local RAS -> B's local RAS
        slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(
            volumeA.GetParentTransformNode(), volumeB.GetParentTransformNode(), a_to_b)
        a_ijk_to_b_ijk = vtk.vtkGeneralTransform()
        a_ijk_to_b_ijk.PostMultiply()
        a_ijk_to_b_ijk.Concatenate(numpy_to_matrix(ijk_to_ras(volumeA)))
        a_ijk_to_b_ijk.Concatenate(a_to_b)
        a_ijk_to_b_ijk.Concatenate(numpy_to_matrix(np.linalg.inv(ijk_to_ras(volumeB))))

        def reslice(image_data, interpolation_linear: bool):
            reslicer = vtk.vtkImageReslice()
            reslicer.SetInputData(image_data)
            reslicer.SetResliceTransform(a_ijk_to_b_ijk)
            reslicer.SetOutputOrigin(0.0, 0.0, 0.0)
            reslicer.SetOutputSpacing(1.0, 1.0, 1.0)
            i, j, k = volumeA.GetImageData().GetDimensions()
            reslicer.SetOutputExtent(0, i - 1, 0, j - 1, 0, k - 1)
            reslicer.SetBackgroundLevel(0.0)
            if interpolation_linear:
                reslicer.SetInterpolationModeToLinear()
            else:
                reslicer.SetInterpolationModeToNearestNeighbor()
            reslicer.Update()
            return reslicer.GetOutput()

        source = vtk.vtkImageData()
        source.ShallowCopy(volumeB.GetImageData())
        source.SetOrigin(0.0, 0.0, 0.0)
        source.SetSpacing(1.0, 1.0, 1.0)
        ones = vtk.vtkImageData()
        ones.SetExtent(source.GetExtent())
        ones.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
        ones.GetPointData().GetScalars().Fill(1)

        resampled = array_from_image_data(reslice(source, True), volumeB.GetName())
        inside = array_from_image_data(reslice(ones, False)) > 0
        overlap = float(np.count_nonzero(inside)) / inside.size
        if overlap == 0.0:
            raise InputError(f"'{volumeA.GetName()}' and '{volumeB.GetName()}' do not overlap in physical space "
                             f"(with the transforms of the scene applied).")
        message = (f"'{volumeB.GetName()}' is under a non-linear transform: it was resampled onto "
                   f"'{volumeA.GetName()}' in Slicer before fusion")
        if overlap < 1.0:
            message += f"; {100 * overlap:.1f}% of '{volumeA.GetName()}' lies inside its field of view"
        warnings.append(message + ".")
        components = volumeB.GetImageData().GetNumberOfScalarComponents()
        image = sitk.GetImageFromArray(resampled, isVector=components > 1)
        return image

    def _input_images(self, volumeA, volumeB, warnings: List[str]):
        from ..mrml_convert import ijk_to_ras, volume_node_to_sitk

        image_a = volume_node_to_sitk(volumeA)
        b_to_a = self._b_in_frame_of_a(volumeA, volumeB)
        if b_to_a is not None:
            image_b = volume_node_to_sitk(volumeB, b_to_a @ ijk_to_ras(volumeB))
        else:
            image_b = self._resample_b_nonlinear(volumeA, volumeB, warnings)
            image_b.CopyInformation(image_a)
        return image_a, image_b

    @staticmethod
    def _colour_for_b(volumeB, colourB, presetB):
        """(colour table or None, preset of B) for the colourB choice; see the colourB parameter."""
        from ..mrml_convert import colour_table_of, display_window_preset

        choice = (colourB or COLOUR_NONE).strip()
        if choice.lower() == COLOUR_NONE:
            return None, presetB
        if volumeB.IsA("vtkMRMLVectorVolumeNode"):
            return None, presetB  # already RGB: the engine keeps its colours (and says so)
        if choice.lower() == COLOUR_OWN:
            display = volumeB.GetDisplayNode()
            colour_node = display.GetColorNode() if display is not None else None
            if colour_node is None:
                raise InputError(f"'{volumeB.GetName()}' has no colour table to fuse with; choose a colour node "
                                 f"such as PET-Heat, or none.")
            # Colour as the user sees it: the displayed window too, unless a preset was chosen explicitly.
            if (presetB or "auto").strip().lower() == "auto":
                presetB = display_window_preset(volumeB) or presetB
            return colour_table_of(colour_node), presetB
        colour_node = volumeB.GetScene().GetFirstNode(choice, "vtkMRMLColorNode")
        if colour_node is None:
            raise InputError(f"There is no colour node named '{choice}' in the scene; choose e.g. PET-Heat.")
        return colour_table_of(colour_node), presetB

    @staticmethod
    def _is_colour(image) -> bool:
        import SimpleITK as sitk

        from ..colour import has_chroma

        if image.GetNumberOfComponentsPerPixel() != 3:
            return False
        return has_chroma(np.nan_to_num(sitk.GetArrayViewFromImage(image)))
