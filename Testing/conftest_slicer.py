"""A real MRML scene from slicer-core (Slicer's MRML libraries without Qt), set up as Slicer sets it up.

Import the fixtures into a test module (``from conftest_slicer import mrml``). The scene gets an
application logic with a colour logic and the default colour tables (so default display nodes find their
colour nodes) and a segmentations logic kept alive with its scene set (without one, segment operations fail);
``slicer.mrmlScene`` points at it during the test and is restored afterwards.
"""
from __future__ import annotations

import os

import pytest

try:
    import slicer
except ImportError:  # as with the shared data: skip locally, fail in CI (CI installs the test extras)
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("slicer-core is not installed (pip install -e '.[test]')", allow_module_level=True)


class SlicerContext:
    """The scene and the logics a test needs, kept referenced for the test's lifetime."""

    def __init__(self):
        self.scene = slicer.vtkMRMLScene()
        self.app_logic = slicer.vtkSlicerApplicationLogic()
        self.app_logic.SetMRMLScene(self.scene)
        colours = self.app_logic.GetColorLogic()
        if colours is None:
            colours = slicer.vtkSlicerColorLogic()
            self.app_logic.SetColorLogic(colours)
        colours.SetMRMLScene(self.scene)
        colours.AddDefaultColorNodes()
        self.colour_logic = colours
        self.segmentations_logic = slicer.vtkSlicerSegmentationsModuleLogic()
        self.segmentations_logic.SetMRMLScene(self.scene)
        self.volumes_logic = slicer.vtkSlicerVolumesLogic()
        self.volumes_logic.SetMRMLScene(self.scene)

    def load_volume(self, path, name=None):
        """Load a file through MRML storage nodes (vtkMRMLVolumeArchetypeStorageNode), as Slicer does."""
        from pathlib import Path

        path = Path(path)
        node = self.volumes_logic.AddArchetypeVolume(str(path), name or path.name.split(".")[0], 0)
        assert node is not None and node.GetImageData() is not None, f"could not load {path}"
        return node

    def node_ids(self):
        return sorted(self.scene.GetNthNode(i).GetID() for i in range(self.scene.GetNumberOfNodes()))

    def close(self):
        self.segmentations_logic.SetMRMLScene(None)
        self.volumes_logic.SetMRMLScene(None)
        self.colour_logic.SetMRMLScene(None)
        self.app_logic.SetMRMLScene(None)
        self.scene.Clear(1)


@pytest.fixture
def mrml():
    previous = getattr(slicer, "mrmlScene", None)
    context = SlicerContext()
    slicer.mrmlScene = context.scene
    try:
        yield context
    finally:
        slicer.mrmlScene = previous
        context.close()
