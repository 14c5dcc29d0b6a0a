"""The module's self-test, offline: the built-in head phantom, fused in a real MRML scene, then checked.

Runs inside Slicer (``MedFusionTest``, Reload and Test, ctest) and in pytest against slicer-core, so the test
that ships with the module is itself tested here. Nothing is downloaded: the volumes come from
:func:`MedFusionLib.phantom.make_head_phantom`.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import numpy as np

CLASSIC_METHOD = "laplacian"
NETWORK_METHOD = "mfenet"


def add_phantom_volumes(scene, scale: float = 0.4) -> Dict[str, object]:
    """CT (axis-aligned) and MR (oblique grid) volume nodes of the phantom, named "CT" and "MR"."""
    from .mrml_convert import add_volume_from_sitk
    from .phantom import make_head_phantom

    images = make_head_phantom(("ct", "mr"), scale=scale)
    return {"CT": add_volume_from_sitk(scene, images["ct"], "CT"),
            "MR": add_volume_from_sitk(scene, images["mr"], "MR")}


def _fingerprint(node):
    from .mrml_convert import ijk_to_ras, voxel_array

    return voxel_array(node).tobytes(), ijk_to_ras(node).tobytes(), node.GetTransformNodeID()


def check_output(output, volumeA, volumeB) -> None:
    """Geometry, value range and edge segmentation of one MedFusionOutput; AssertionError when wrong."""
    from .logic import EDGE_SEGMENT_IDS
    from .mrml_convert import ijk_to_ras, voxel_array

    volume = output.volume
    assert volume is not None and volume.GetScene() is volumeA.GetScene(), "the fused volume is not in the scene"
    assert volume.GetID() not in (volumeA.GetID(), volumeB.GetID()), "an input was overwritten"
    assert np.array_equal(ijk_to_ras(volume), ijk_to_ras(volumeA)), "the fused volume's IJK-to-RAS is not A's"
    assert volume.GetImageData().GetDimensions() == volumeA.GetImageData().GetDimensions(), "size differs from A"
    assert volume.GetTransformNodeID() == volumeA.GetTransformNodeID(), "parent transform differs from A's"
    fused = voxel_array(volume)
    assert fused.dtype == np.float32 and np.isfinite(fused).all(), "the fused volume is not finite float32"
    assert fused.min() >= 0.0 and fused.max() <= 1.0, f"fused values outside [0, 1]: {fused.min()}..{fused.max()}"
    assert fused.std() > 0.01, "the fused volume is (nearly) constant"
    display = volume.GetDisplayNode()
    assert display is not None and not display.GetAutoWindowLevel(), "window/level is not set on the fused volume"
    assert abs(display.GetWindow() - 1.0) < 1e-6 and abs(display.GetLevel() - 0.5) < 1e-6, "window/level not 1/0.5"

    segmentation = output.edges
    assert segmentation is not None, "no edge segmentation"
    segments = segmentation.GetSegmentation()
    assert segments.GetNumberOfSegments() == 2, f"{segments.GetNumberOfSegments()} edge segments, expected 2"
    names = [segments.GetSegment(i).GetName() for i in EDGE_SEGMENT_IDS]
    assert names == [f"{volumeA.GetName()} edges", f"{volumeB.GetName()} edges"], f"segment names {names}"
    colours = [tuple(segments.GetSegment(i).GetColor()) for i in EDGE_SEGMENT_IDS]
    assert colours[0] != colours[1], "both edge segments have the same colour"
    assert segmentation.GetTransformNodeID() == volumeA.GetTransformNodeID(), "edges not under A's transform"
    seg_display = segmentation.GetDisplayNode()
    assert seg_display.GetVisibility2DOutline() and not seg_display.GetVisibility2DFill(), "edges not outlines"
    labels = edge_labels(segmentation, volumeA)
    assert labels[0].any() and labels[1].any(), "an edge segment is empty"


def edge_labels(segmentation, volumeA):
    """The two edge segments as boolean (K, J, I) arrays on A's grid (from their binary labelmaps)."""
    import slicer

    from .logic import EDGE_SEGMENT_IDS
    from .mrml_convert import array_from_image_data, ijk_to_ras, numpy_to_matrix

    reference = slicer.vtkOrientedImageData()
    reference.SetExtent(volumeA.GetImageData().GetExtent())
    reference.SetImageToWorldMatrix(numpy_to_matrix(ijk_to_ras(volumeA)))
    name = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    out = []
    for segment_id in EDGE_SEGMENT_IDS:
        segment = segmentation.GetSegmentation().GetSegment(segment_id)
        assert segment is not None, f"segment {segment_id} is missing"
        labelmap = segment.GetRepresentation(name)
        assert labelmap is not None, f"segment {segment_id} has no binary labelmap"
        on_a = slicer.vtkOrientedImageData()  # a no-op when the labelmap is already on A's grid
        ok = slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(labelmap, reference, on_a)
        assert ok, f"could not resample segment {segment_id} onto A's grid"
        out.append(array_from_image_data(on_a) == segment.GetLabelValue())
    return out


def run_self_test(scene, methods: Optional[Sequence[str]] = None, scale: float = 0.4,
                  log: Callable[[str], None] = print, device: str = "auto", worker: bool = True) -> Dict[str, str]:
    """Fuse the phantom's CT and MR with a classic method and MFEnet; returns method -> "passed" / "skipped: ...".

    With ``worker``, the first method also runs as the widget runs it, in a worker process (``logic.start``, with
    this Python's ``sys.executable``: in Slicer, Slicer's own), and must give the same voxels (outcome "worker").
    Raises AssertionError (or the logic's error) on the first failure.
    """
    from .logic import MedFusionLogic
    from .methods import REGISTRY
    from .mrml_convert import voxel_array

    methods = list(methods) if methods is not None else [CLASSIC_METHOD, NETWORK_METHOD]
    volumes = add_phantom_volumes(scene, scale)
    ct, mr = volumes["CT"], volumes["MR"]
    before = {name: _fingerprint(node) for name, node in volumes.items()}
    logic = MedFusionLogic()
    outcome: Dict[str, str] = {}
    for method in methods:
        if method not in REGISTRY.names():
            outcome[method] = f"skipped: method '{method}' is not in this version's registry"
            log(f"MedFusion self-test: {outcome[method]}.")
            continue
        log(f"MedFusion self-test: fusing CT + MR with {method}...")
        calls = []
        output = logic.process(ct, mr, method=method, presetA="ct", presetB="mr", device=device,
                               progress=lambda done, total: calls.append((done, total)))
        check_output(output, ct, mr)
        assert calls and calls[-1][0] == calls[-1][1], "progress did not reach the end"
        outcome[method] = "passed"
        log(f"MedFusion self-test: {method} passed ({output.summary()}).")
        if worker and "worker" not in outcome:
            log(f"MedFusion self-test: fusing CT + MR with {method} in a worker process...")
            job = logic.start(ct, mr, method=method, presetA="ct", presetB="mr", device=device)
            remote = job.wait(timeout=600)
            check_output(remote, ct, mr)
            assert np.array_equal(voxel_array(remote.volume), voxel_array(output.volume)), \
                "the worker's result differs from the in-process result"
            outcome["worker"] = "passed"
            log("MedFusion self-test: the worker process gave the same result.")
    after = {name: _fingerprint(node) for name, node in volumes.items()}
    assert before == after, "an input volume was modified"
    return outcome
