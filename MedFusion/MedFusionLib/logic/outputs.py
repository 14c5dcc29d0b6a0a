"""Transactional outputs: results into the scene. Nodes are created only after the engine succeeded; if a later
step fails, created nodes are removed and a user-selected output node gets its previous content back, so an error
or a cancel leaves the scene as it was.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, List

import numpy as np

from .parameters import EDGE_COLOURS, EDGE_SEGMENT_IDS, RGB_WINDOW_LEVEL, SCALAR_WINDOW_LEVEL

log = logging.getLogger(__name__)


@dataclass
class MedFusionOutput:
    """What one :meth:`MedFusionLogic.process` call added or updated."""
    volume: Any  # vtkMRMLScalarVolumeNode or vtkMRMLVectorVolumeNode (RGB)
    edges: Any  # vtkMRMLSegmentationNode or None
    result: Any  # the engine's FusionResult (images included)
    warnings: List[str] = field(default_factory=list)
    created: List[str] = field(default_factory=list)  # IDs of nodes this run added to the scene

    def summary(self) -> str:
        return self.result.summary()


def _remove_displays_added_since(node, scene, kept_ids) -> None:
    """Display nodes the run added to a user-selected output (those not in ``kept_ids``) leave the scene."""
    for i in reversed(range(node.GetNumberOfDisplayNodes())):
        display = node.GetNthDisplayNode(i)
        if display is not None and display.GetID() not in kept_ids and scene is not None:
            scene.RemoveNode(display)


class _VolumeState:
    """Everything process() may change on a user-selected output volume, to put it back on failure."""

    def __init__(self, node):
        import vtk

        from ..mrml_convert import ijk_to_ras

        self.node = node
        self.image = None
        if node.GetImageData() is not None:
            self.image = vtk.vtkImageData()
            self.image.DeepCopy(node.GetImageData())
        self.matrix = ijk_to_ras(node)
        self.transform_id = node.GetTransformNodeID()
        self.display_ids = [node.GetNthDisplayNodeID(i) for i in range(node.GetNumberOfDisplayNodes())]
        display = node.GetDisplayNode()
        self.window_level = None
        if display is not None and hasattr(display, "GetAutoWindowLevel"):
            self.window_level = (display.GetAutoWindowLevel(), display.GetWindow(), display.GetLevel())
        self.attributes = {name: node.GetAttribute(name) for name in _PROVENANCE}
        self.vector_type = node.GetVoxelVectorType() if hasattr(node, "GetVoxelVectorType") else None

    def restore(self):
        from ..mrml_convert import numpy_to_matrix

        node, scene = self.node, self.node.GetScene()
        node.SetIJKToRASMatrix(numpy_to_matrix(self.matrix))
        node.SetAndObserveImageData(self.image)
        node.SetAndObserveTransformNodeID(self.transform_id)
        _remove_displays_added_since(node, scene, self.display_ids)
        display = node.GetDisplayNode()
        if self.window_level is not None and display is not None:
            auto, window, level = self.window_level
            display.SetWindowLevel(window, level)
            display.SetAutoWindowLevel(auto)
        if self.vector_type is not None:
            node.SetVoxelVectorType(self.vector_type)
        for name, value in self.attributes.items():
            if value is None:
                node.RemoveAttribute(name)
            else:
                node.SetAttribute(name, value)


class _SegmentationState:
    """The segments, geometry, transform and display of a user-selected edge segmentation."""

    def __init__(self, node):
        import slicer

        self.node = node
        self.segmentation = slicer.vtkSegmentation()
        self.segmentation.DeepCopy(node.GetSegmentation())
        self.transform_id = node.GetTransformNodeID()
        self.display_ids = [node.GetNthDisplayNodeID(i) for i in range(node.GetNumberOfDisplayNodes())]
        display = node.GetDisplayNode()
        self.fill_outline = None
        if display is not None:
            self.fill_outline = (display.GetVisibility2DFill(), display.GetVisibility2DOutline())

    def restore(self):
        node, scene = self.node, self.node.GetScene()
        node.GetSegmentation().DeepCopy(self.segmentation)
        node.SetAndObserveTransformNodeID(self.transform_id)
        _remove_displays_added_since(node, scene, self.display_ids)
        display = node.GetDisplayNode()
        if self.fill_outline is not None and display is not None:
            display.SetVisibility2DFill(self.fill_outline[0])
            display.SetVisibility2DOutline(self.fill_outline[1])


_PROVENANCE = ("MedFusion.Method", "MedFusion.InputA", "MedFusion.InputB", "MedFusion.Summary")


class _OutputTransaction:
    """Collects nodes added and states of nodes changed; ``rollback`` undoes both."""

    def __init__(self, scene):
        self.scene = scene
        self.added: List[Any] = []
        self.saved: List[Any] = []

    def add(self, node):
        self.scene.AddNode(node)
        self.added.append(node)
        return node

    def save(self, state):
        self.saved.append(state)

    def created_display_nodes(self, node):
        for i in range(node.GetNumberOfDisplayNodes()):
            display = node.GetNthDisplayNode(i)
            if display is not None and display not in self.added:
                self.added.append(display)

    def rollback(self):
        for node in reversed(self.added):
            if node.GetScene() is not None:
                self.scene.RemoveNode(node)
        for state in reversed(self.saved):
            try:
                state.restore()
            except Exception:  # restoring must not hide the original error
                log.exception("MedFusion could not restore node '%s'", state.node.GetName())


class OutputsMixin:
    """MedFusionLogic's output side: the engine's result into the scene, all or nothing."""

    # ---------------------------------------------------------------- outputs -------------------------------
    def _write_outputs(self, volumeA, volumeB, info, result, outputVolume, outputEdges) -> MedFusionOutput:
        import slicer

        from ..mrml_convert import ijk_to_ras, set_volume_from_sitk

        scene = volumeA.GetScene()
        rgb = result.fused.GetNumberOfComponentsPerPixel() == 3
        base_name = f"{volumeA.GetName()} + {volumeB.GetName()} ({info.title})"
        transaction = _OutputTransaction(scene)
        try:
            if outputVolume is None:
                volume = slicer.vtkMRMLVectorVolumeNode() if rgb else slicer.vtkMRMLScalarVolumeNode()
                volume.SetName(scene.GenerateUniqueName(base_name))
                transaction.add(volume)
            else:
                volume = outputVolume
                transaction.save(_VolumeState(volume))
            set_volume_from_sitk(volume, result.fused, ijk_to_ras(volumeA))  # A's matrix, bit for bit
            volume.SetAndObserveTransformNodeID(volumeA.GetTransformNodeID())
            self._set_provenance(volume, volumeA, volumeB, info, result)
            had_display = volume.GetDisplayNode() is not None
            if not had_display:
                volume.CreateDefaultDisplayNodes()
                transaction.created_display_nodes(volume)
            if rgb and hasattr(volume, "SetVoxelVectorType"):  # tag it as colour, not as a 3-vector field
                volume.SetVoxelVectorType(slicer.vtkMRMLVolumeNode.VoxelVectorTypeColorRGB)
            display = volume.GetDisplayNode()
            if display is not None and hasattr(display, "SetWindowLevel"):
                # Show the values as they are, not stretched: [0, 1] grey, or 0..255 colour.
                window, level = RGB_WINDOW_LEVEL if rgb else SCALAR_WINDOW_LEVEL
                display.AutoWindowLevelOff()
                display.SetWindowLevel(window, level)

            segmentation = None
            if result.edges is not None:
                if outputEdges is None:
                    segmentation = slicer.vtkMRMLSegmentationNode()
                    segmentation.SetName(scene.GenerateUniqueName(f"{base_name} edges"))
                    transaction.add(segmentation)
                else:
                    segmentation = outputEdges
                    transaction.save(_SegmentationState(segmentation))
                self._fill_edges(segmentation, result.edges, volumeA, volumeB)
                if segmentation.GetDisplayNode() is None:
                    segmentation.CreateDefaultDisplayNodes()
                    transaction.created_display_nodes(segmentation)
                seg_display = segmentation.GetDisplayNode()
                if seg_display is not None:
                    seg_display.SetVisibility2DFill(False)  # outlines only: the anatomy stays visible
                    seg_display.SetVisibility2DOutline(True)
                    seg_display.SetVisibility3D(False)
            self._place_in_hierarchy(scene, volumeA, transaction.added)
        except BaseException:
            transaction.rollback()
            raise
        return MedFusionOutput(volume=volume, edges=segmentation, result=result,
                               created=[n.GetID() for n in transaction.added if n.GetID()])

    @staticmethod
    def _set_provenance(volume, volumeA, volumeB, info, result):
        volume.SetAttribute("MedFusion.Method", info.name)
        volume.SetAttribute("MedFusion.InputA", volumeA.GetID())
        volume.SetAttribute("MedFusion.InputB", volumeB.GetID())
        volume.SetAttribute("MedFusion.Summary", result.summary())

    @staticmethod
    def _fill_edges(segmentation, edges_image, volumeA, volumeB):
        """One segment per source, named after it; label 3 (an edge of both) is in both segments."""
        import SimpleITK as sitk
        import slicer

        from ..mrml_convert import image_data_from_array, ijk_to_ras, numpy_to_matrix

        labels = sitk.GetArrayFromImage(edges_image)
        if labels.ndim == 2:
            labels = labels[np.newaxis]
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volumeA)
        segmentation.SetAndObserveTransformNodeID(volumeA.GetTransformNodeID())
        segments = segmentation.GetSegmentation()
        segments.RemoveAllSegments()
        matrix = numpy_to_matrix(ijk_to_ras(volumeA))
        for segment_id, values, colour, source in zip(EDGE_SEGMENT_IDS, ((1, 3), (2, 3)), EDGE_COLOURS,
                                                     (volumeA, volumeB)):
            mask = np.isin(labels, values).astype(np.uint8)
            oriented = slicer.vtkOrientedImageData()
            oriented.ShallowCopy(image_data_from_array(mask))
            oriented.SetImageToWorldMatrix(matrix)
            added = segmentation.AddSegmentFromBinaryLabelmapRepresentation(
                oriented, f"{source.GetName()} edges", list(colour), segment_id)
            if not added:
                raise RuntimeError(f"Could not add the edge segment of '{source.GetName()}' to the segmentation.")

    @staticmethod
    def _place_in_hierarchy(scene, volumeA, nodes):
        """Put new nodes next to A in the subject hierarchy (where Slicer keeps one)."""
        import slicer

        hierarchy = scene.GetFirstNodeByClass("vtkMRMLSubjectHierarchyNode")
        if hierarchy is None:
            return
        a_item = hierarchy.GetItemByDataNode(volumeA)
        if not a_item:
            return
        parent = hierarchy.GetItemParent(a_item)
        for node in nodes:
            if node.IsA("vtkMRMLDisplayNode"):
                continue
            item = hierarchy.GetItemByDataNode(node)
            if item:
                hierarchy.SetItemParent(item, parent)
