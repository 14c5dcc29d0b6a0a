"""MedFusionLogic on a real MRML scene (slicer-core) with real volumes loaded through MRML storage nodes.

Covers: output geometry (axis-aligned and oblique references), parent transforms (linear and non-linear, never
hardened), naming and reuse of outputs, cancel and errors that leave the scene as it was, the parameter node
through scene save/load, RGB inputs, and the module's own self-test.
"""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from conftest_slicer import mrml, slicer  # noqa: F401  (fixture and the slicer-core module)
from MedFusionLib import fuse_volumes, read_volume
from MedFusionLib.errors import Cancelled, InputError
from MedFusionLib.logic import (EDGE_SEGMENT_IDS, PARAMETER_NAMES, PARAMETERS, MedFusionLogic, _OutputTransaction,
                                _SegmentationState, _VolumeState, method_options_for)
from MedFusionLib.methods import REGISTRY
from MedFusionLib.mrml_convert import ijk_to_ras, image_data_from_array, numpy_to_matrix, voxel_array
from MedFusionLib.selftest import check_output, edge_labels, run_self_test

FAST = dict(method="average", device="cpu")  # the geometry tests do not depend on the method


def _translation(scene, offset, name="shift"):
    node = slicer.vtkMRMLLinearTransformNode()
    node.SetName(name)
    scene.AddNode(node)
    matrix = np.eye(4)
    matrix[:3, 3] = offset
    node.SetMatrixTransformToParent(numpy_to_matrix(matrix))
    return node


def _grid_translation(scene, offset):
    """A non-linear (grid) transform node whose displacement is the same everywhere."""
    import vtk
    from vtk.util import numpy_support

    grid = vtk.vtkImageData()
    grid.SetOrigin(-400.0, -400.0, -400.0)
    grid.SetSpacing(200.0, 200.0, 200.0)
    grid.SetDimensions(5, 5, 5)
    grid.AllocateScalars(vtk.VTK_DOUBLE, 3)
    numpy_support.vtk_to_numpy(grid.GetPointData().GetScalars())[:] = offset
    transform = slicer.vtkOrientedGridTransform()
    transform.SetDisplacementGridData(grid)
    transform.SetInterpolationModeToLinear()
    node = slicer.vtkMRMLGridTransformNode()
    scene.AddNode(node)
    node.SetAndObserveTransformToParent(transform)
    return node


@pytest.fixture
def sts(mrml, sts_dir):
    """CT (A) and MR T1 (B) of one sarcoma patient: registered, different grids, MR covers part of the CT."""
    return mrml.load_volume(sts_dir / "CT.nii.gz", "CT"), mrml.load_volume(sts_dir / "MR_T1.nii.gz", "MR")


@pytest.fixture
def stroke(mrml, stroke_dir):
    """T1 (A) and T2 (B): one oblique grid (124x160x140, 1 mm)."""
    return (mrml.load_volume(stroke_dir / "T1.nii.gz", "T1"), mrml.load_volume(stroke_dir / "T2.nii.gz", "T2"))


def _assert_reference_geometry(output, volume_a):
    volume = output.volume
    assert np.array_equal(ijk_to_ras(volume), ijk_to_ras(volume_a))  # copied exactly, not recomputed
    assert volume.GetImageData().GetDimensions() == volume_a.GetImageData().GetDimensions()
    assert volume.GetTransformNodeID() == volume_a.GetTransformNodeID()
    reference = slicer.vtkMRMLSegmentationNode()
    reference.SetReferenceImageGeometryParameterFromVolumeNode(volume_a)
    name = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    assert output.edges.GetSegmentation().GetConversionParameter(name) == \
        reference.GetSegmentation().GetConversionParameter(name)


# ---------------------------------------------------------------------------------------------- geometry -----

def test_output_has_a_geometry_names_and_edges_on_real_volumes(mrml, sts):
    ct, mr = sts
    output = MedFusionLogic().process(ct, mr, presetA="ct:soft", presetB="mr", **FAST)
    _assert_reference_geometry(output, ct)
    check_output(output, ct, mr)
    assert output.volume.IsA("vtkMRMLScalarVolumeNode") and not output.volume.IsA("vtkMRMLVectorVolumeNode")
    assert output.volume.GetName() == "CT + MR (Average)"
    assert output.edges.GetName() == "CT + MR (Average) edges"
    segments = output.edges.GetSegmentation()
    assert [segments.GetSegment(i).GetName() for i in EDGE_SEGMENT_IDS] == ["CT edges", "MR edges"]
    assert any("field of view" in w for w in output.warnings)  # the MR covers only part of the CT
    assert output.volume.GetAttribute("MedFusion.Method") == "average"


def test_label_3_belongs_to_both_segments(mrml, sts):
    ct, mr = sts
    output = MedFusionLogic().process(ct, mr, **FAST)
    labels = sitk.GetArrayFromImage(output.result.edges)
    in_a, in_b = edge_labels(output.edges, ct)
    np.testing.assert_array_equal(in_a, np.isin(labels, (1, 3)))
    np.testing.assert_array_equal(in_b, np.isin(labels, (2, 3)))
    assert np.count_nonzero(labels == 3) > 0


@pytest.mark.parametrize("pair", ["sts", "stroke"])
def test_mrml_path_equals_the_file_path(mrml, pair, request):
    """Nodes converted with RAS<->LPS give exactly what the engine gives on the same files (CLI path)."""
    folder = request.getfixturevalue("sts_dir" if pair == "sts" else "stroke_dir")
    a_node, b_node = request.getfixturevalue(pair)
    files = ("CT.nii.gz", "MR_T1.nii.gz") if pair == "sts" else ("T1.nii.gz", "T2.nii.gz")
    output = MedFusionLogic().process(a_node, b_node, **FAST)
    direct = fuse_volumes(read_volume(folder / files[0]), read_volume(folder / files[1]), **FAST)
    # Slicer keeps IJK-to-RAS in double precision from the same header: geometry agrees to ~1e-12 mm, so the
    # voxels agree to float rounding (a flipped, misplaced or shifted grid would differ by far more).
    np.testing.assert_allclose(voxel_array(output.volume), sitk.GetArrayFromImage(direct.fused), rtol=0, atol=1e-6)
    same_edges = sitk.GetArrayFromImage(output.result.edges) == sitk.GetArrayFromImage(direct.edges)
    assert same_edges.mean() > 0.9999
    assert output.result.overlap == pytest.approx(direct.overlap)


def test_oblique_reference_keeps_its_geometry(mrml, stroke):
    t1, t2 = stroke
    assert not np.allclose(ijk_to_ras(t1)[:3, :3] / np.abs(ijk_to_ras(t1)[:3, :3]).max(axis=0),
                           np.diag([-1.0, -1.0, 1.0]))  # the stroke grid is really oblique
    output = MedFusionLogic().process(t1, t2, axis="coronal", **FAST)
    _assert_reference_geometry(output, t1)
    check_output(output, t1, t2)


# ---------------------------------------------------------------------------------------------- transforms ---

def test_linear_transform_on_b_moves_b_and_is_not_hardened(mrml, stroke):
    t1, t2 = stroke
    logic = MedFusionLogic()
    matrix_before, voxels_before = ijk_to_ras(t2), voxel_array(t2)
    plain = voxel_array(logic.process(t1, t2, **FAST).volume)

    offset = (6.0, -4.0, 9.0)
    shift = _translation(mrml.scene, offset)
    t2.SetAndObserveTransformNodeID(shift.GetID())
    moved = voxel_array(logic.process(t1, t2, **FAST).volume)

    hardened = mrml.volumes_logic.CloneVolume(mrml.scene, t2, "T2 hardened")
    hardened.SetAndObserveTransformNodeID(shift.GetID())
    slicer.vtkSlicerTransformLogic.hardenTransform(hardened)
    assert hardened.GetTransformNodeID() is None
    reference = voxel_array(logic.process(t1, hardened, **FAST).volume)

    np.testing.assert_allclose(moved, reference, atol=1e-6)  # the transform is honoured...
    assert np.abs(moved - plain).mean() > 0.01  # ...and it changes the result
    # The user's node still has its transform, unhardened, and its own geometry and voxels.
    assert t2.GetTransformNodeID() == shift.GetID()
    np.testing.assert_array_equal(ijk_to_ras(t2), matrix_before)
    np.testing.assert_array_equal(voxel_array(t2), voxels_before)


def test_transform_on_a_is_copied_to_the_outputs(mrml, stroke):
    """A and B under one transform: same fused voxels as without it, outputs under A's transform."""
    t1, t2 = stroke
    logic = MedFusionLogic()
    plain = voxel_array(logic.process(t1, t2, **FAST).volume)
    shift = _translation(mrml.scene, (20.0, 0.0, -10.0))
    for node in (t1, t2):
        node.SetAndObserveTransformNodeID(shift.GetID())
    output = logic.process(t1, t2, **FAST)
    _assert_reference_geometry(output, t1)
    assert output.edges.GetTransformNodeID() == shift.GetID()
    np.testing.assert_array_equal(voxel_array(output.volume), plain)


def test_nonlinear_transform_on_b_is_applied(mrml, stroke):
    t1, t2 = stroke
    logic = MedFusionLogic()
    offset = (6.0, -4.0, 9.0)
    t2.SetAndObserveTransformNodeID(_translation(mrml.scene, offset).GetID())
    linear = voxel_array(logic.process(t1, t2, **FAST).volume)
    grid = _grid_translation(mrml.scene, offset)
    t2.SetAndObserveTransformNodeID(grid.GetID())
    output = logic.process(t1, t2, **FAST)
    nonlinear = voxel_array(output.volume)
    _assert_reference_geometry(output, t1)
    assert any("non-linear" in w for w in output.warnings)
    assert t2.GetTransformNodeID() == grid.GetID()
    # Same displacement, resampled by VTK instead of the engine: the same image up to interpolation details.
    assert np.corrcoef(linear.ravel(), nonlinear.ravel())[0, 1] > 0.99
    assert np.abs(linear - nonlinear).mean() < 0.01


# ---------------------------------------------------------------------------------------------- outputs ------

def test_second_run_adds_new_nodes_and_keeps_the_first(mrml, stroke):
    t1, t2 = stroke
    logic = MedFusionLogic()
    first = logic.process(t1, t2, **FAST)
    first_voxels = voxel_array(first.volume)
    second = logic.process(t1, t2, method="max", device="cpu")
    assert second.volume.GetID() != first.volume.GetID() and second.edges.GetID() != first.edges.GetID()
    third = logic.process(t1, t2, **FAST)
    assert len({first.volume.GetName(), third.volume.GetName()}) == 2  # unique readable names
    assert third.volume.GetName().startswith("T1 + T2 (Average)")
    np.testing.assert_array_equal(voxel_array(first.volume), first_voxels)
    assert not np.array_equal(voxel_array(second.volume), first_voxels)


def test_user_selected_outputs_are_reused(mrml, stroke):
    t1, t2 = stroke
    mine = mrml.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "my fusion")
    edges = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "my edges")
    edges.GetSegmentation().AddEmptySegment("old", "old")
    ids_before = set(mrml.node_ids())
    output = MedFusionLogic().process(t1, t2, outputVolume=mine, outputEdges=edges, **FAST)
    assert output.volume is mine and output.edges is edges
    assert mine.GetName() == "my fusion" and edges.GetName() == "my edges"
    added = set(mrml.node_ids()) - ids_before
    assert all("DisplayNode" in node_id for node_id in added)  # display nodes only: no new data node
    assert edges.GetSegmentation().GetSegment("old") is None
    check_output(output, t1, t2)


def test_cancel_midway_leaves_the_scene_as_it_was(mrml, stroke):
    t1, t2 = stroke
    mine = mrml.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "previous result")
    old = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    mine.SetAndObserveImageData(image_data_from_array(old))
    mine.SetIJKToRASMatrix(numpy_to_matrix(np.diag([2.0, 2.0, 2.0, 1.0])))
    ids_before = mrml.node_ids()
    calls = []

    def cancel():
        return len(calls) >= 2  # after two batches of slices

    with pytest.raises(Cancelled):
        MedFusionLogic().process(t1, t2, outputVolume=mine, batchSize=8, cancel=cancel,
                                 progress=lambda done, total: calls.append((done, total)), **FAST)
    assert len(calls) == 2 and calls[-1][0] < calls[-1][1]  # it really stopped midway
    assert mrml.node_ids() == ids_before
    np.testing.assert_array_equal(voxel_array(mine), old)
    np.testing.assert_array_equal(ijk_to_ras(mine), np.diag([2.0, 2.0, 2.0, 1.0]))


def test_failed_write_restores_user_nodes_and_removes_new_ones(mrml, stroke):
    """The rollback used when a step after the engine fails: real nodes, real states."""
    t1, _ = stroke
    volume = mrml.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "mine")
    volume.SetAndObserveImageData(image_data_from_array(np.ones((2, 3, 4), np.float32)))
    segmentation = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "my edges")
    segmentation.GetSegmentation().AddEmptySegment("kept", "kept")
    ids_before = mrml.node_ids()
    transaction = _OutputTransaction(mrml.scene)
    transaction.save(_VolumeState(volume))
    transaction.save(_SegmentationState(segmentation))
    created = transaction.add(slicer.vtkMRMLScalarVolumeNode())
    created.CreateDefaultDisplayNodes()
    transaction.created_display_nodes(created)
    volume.SetAndObserveImageData(image_data_from_array(np.zeros((5, 5, 5), np.float32)))
    volume.SetAndObserveTransformNodeID(_translation(mrml.scene, (1, 2, 3)).GetID())
    segmentation.GetSegmentation().RemoveAllSegments()
    transaction.rollback()
    assert volume.GetTransformNodeID() is None
    np.testing.assert_array_equal(voxel_array(volume), np.ones((2, 3, 4), np.float32))
    assert segmentation.GetSegmentation().GetSegment("kept") is not None
    assert created.GetScene() is None
    assert set(ids_before) <= set(mrml.node_ids())
    assert [i for i in mrml.node_ids() if i not in ids_before] == [
        i for i in mrml.node_ids() if i.startswith("vtkMRMLLinearTransformNode")]


def test_edges_off_adds_no_segmentation(mrml, stroke):
    t1, t2 = stroke
    output = MedFusionLogic().process(t1, t2, edges=False, **FAST)
    assert output.edges is None
    assert mrml.scene.GetFirstNodeByClass("vtkMRMLSegmentationNode") is None


# ---------------------------------------------------------------------------------------------- errors -------

def _vector_volume(scene, components, name):
    node = slicer.vtkMRMLVectorVolumeNode()
    node.SetName(name)
    scene.AddNode(node)
    node.SetAndObserveImageData(image_data_from_array(np.zeros((3, 4, 5, components), np.uint8), components))
    return node


@pytest.mark.parametrize("case, message", [
    ("no A", "Select volume A"),
    ("no B", "Select volume B"),
    ("same twice", "same volume"),
    ("labelmap", "labelmap"),
    ("4 components", "4 components per voxel"),
    ("no overlap", "do not overlap"),
    ("output is an input", "inputs are never overwritten"),
    ("edges output not a segmentation", "not a segmentation"),
    ("unknown method", "Unknown fusion method"),
    ("bad preset", "Unknown intensity preset"),
])
def test_bad_inputs_raise_one_clear_sentence_and_add_nothing(mrml, sts, sts_dir, case, message):
    ct, mr = sts
    mask = mrml.volumes_logic.AddArchetypeVolume(str(sts_dir / "CT_mask.nii.gz"), "tumour", 1)
    assert mask.IsA("vtkMRMLLabelMapVolumeNode")
    rgba = _vector_volume(mrml.scene, 4, "RGBA")
    far = mrml.volumes_logic.CloneVolume(mrml.scene, mr, "MR far away")
    far.SetAndObserveTransformNodeID(_translation(mrml.scene, (0.0, 0.0, 5000.0)).GetID())
    kwargs = dict(FAST)
    a, b = ct, mr
    if case == "no A":
        a = None
    elif case == "no B":
        b = None
    elif case == "same twice":
        b = ct
    elif case == "labelmap":
        b = mask
    elif case == "4 components":
        b = rgba
    elif case == "no overlap":
        b = far
    elif case == "output is an input":
        kwargs["outputVolume"] = mr
    elif case == "edges output not a segmentation":
        kwargs["outputEdges"] = mask
    elif case == "unknown method":
        kwargs["method"] = "nonsense"
    elif case == "bad preset":
        kwargs["presetB"] = "nonsense"
    ids_before = mrml.node_ids()
    with pytest.raises(InputError, match=message) as error:
        MedFusionLogic().process(a, b, **kwargs)
    text = str(error.value)
    assert text.endswith(".") and "\n" not in text and "Traceback" not in text
    assert mrml.node_ids() == ids_before


# ---------------------------------------------------------------------------------------------- RGB ----------

def _one_slice_nrrd(png, path):
    """A Harvard PNG as a one-slice 3D NRRD (Slicer's archetype reader of slicer-core has no PNG reader)."""
    image = sitk.JoinSeries([sitk.ReadImage(str(png))])
    sitk.WriteImage(image, str(path))
    return path


@pytest.fixture
def pet_mri(mrml, harvard_dir, tmp_path):
    folder = harvard_dir / "PET-MRI"
    name = sorted(p.name for p in (folder / "PET").glob("*.png"))[0]
    mri = mrml.load_volume(_one_slice_nrrd(folder / "MRI" / name, tmp_path / "mri.nrrd"), "MRI")
    pet = mrml.load_volume(_one_slice_nrrd(folder / "PET" / name, tmp_path / "pet.nrrd"), "PET")
    return mri, pet


def test_rgb_input_gives_a_vector_volume(mrml, pet_mri):
    mri, pet = pet_mri
    assert pet.IsA("vtkMRMLVectorVolumeNode") and pet.GetImageData().GetNumberOfScalarComponents() == 3
    output = MedFusionLogic().process(mri, pet, **FAST)
    volume = output.volume
    assert volume.IsA("vtkMRMLVectorVolumeNode")
    rgb = voxel_array(volume)
    assert rgb.dtype == np.uint8 and rgb.shape == voxel_array(mri).shape + (3,)
    assert np.any(rgb[..., 0] != rgb[..., 2])  # colour kept
    _assert_reference_geometry(output, mri)
    display = volume.GetDisplayNode()
    assert display.IsA("vtkMRMLVectorVolumeDisplayNode")
    # Colours as they are (0..255 shown as 0..255, not stretched to the slice's range), tagged as colour.
    assert not display.GetAutoWindowLevel() and (display.GetWindow(), display.GetLevel()) == (255.0, 127.5)
    assert volume.GetVoxelVectorType() == slicer.vtkMRMLVolumeNode.VoxelVectorTypeColorRGB
    # The colour source may also be the reference.
    reverse = MedFusionLogic().process(pet, mri, **FAST)
    assert reverse.volume.IsA("vtkMRMLVectorVolumeNode")


def test_rgb_result_into_a_scalar_output_is_refused_before_work(mrml, pet_mri):
    mri, pet = pet_mri
    scalar = mrml.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "grey output")
    ids_before = mrml.node_ids()
    with pytest.raises(InputError, match="select a vector volume"):
        MedFusionLogic().process(mri, pet, outputVolume=scalar, **FAST)
    assert mrml.node_ids() == ids_before


# ---------------------------------------------------------------------------------------------- parameters ---

def test_parameter_node_round_trips_through_scene_save_and_load(mrml, stroke, tmp_path):
    t1, t2 = stroke
    logic = MedFusionLogic()
    node = logic.getParameterNode()
    assert node.GetAttribute("ModuleName") == "MedFusion" and node.GetSingletonTag() == "MedFusion"
    assert logic.getParameterNode() is node or logic.getParameterNode().GetID() == node.GetID()
    logic.setDefaultParameters(node)
    assert all(node.HasParameter(name) for name in PARAMETER_NAMES)
    output = mrml.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "fused here")
    values = dict(inputVolumeA=t1, inputVolumeB=t2, method="max", fusionRule="softmax", edgeStrength=0.25,
                  axis="sagittal", presetA="mr:1:99", presetB="manual:0:300", colourB="PET-Heat", colourMode="ycbcr",
                  device="cpu", showEdges=False, edgeDetail=0.8, checkRegistration=False, outputVolume=output,
                  outputEdges=None)
    assert set(values) == set(PARAMETER_NAMES)
    logic.setParameters(node, **values)
    # Stored as the widget's parameterNodeWrapper stores them.
    assert node.GetParameter("showEdges") == "False" and node.GetParameter("method") == "max"
    assert node.GetParameter("inputVolumeA") == "" and node.GetNodeReferenceID("inputVolumeA") == t1.GetID()

    path = tmp_path / "scene.mrml"
    mrml.scene.SetURL(str(path))
    assert mrml.scene.Commit()
    loaded = slicer.vtkMRMLScene()
    loaded.SetURL(str(path))
    assert loaded.Connect()
    previous, slicer.mrmlScene = slicer.mrmlScene, loaded
    try:
        restored = loaded.GetSingletonNode("MedFusion", "vtkMRMLScriptedModuleNode")
        assert restored is not None
        read = MedFusionLogic().readParameters(restored)
        for name, value in values.items():
            if PARAMETERS[PARAMETER_NAMES.index(name)].kind == "node":
                assert (read[name].GetName() if read[name] is not None else None) == \
                    (value.GetName() if value is not None else None), name
            else:
                assert read[name] == value, name
        assert read["inputVolumeA"].GetImageData() is not None  # the volume came back through its storage node
    finally:
        slicer.mrmlScene = previous
        loaded.Clear(1)


def test_process_parameter_node_runs_what_the_widget_runs(mrml, stroke):
    t1, t2 = stroke
    logic = MedFusionLogic()
    node = logic.getParameterNode()
    logic.setDefaultParameters(node)
    logic.setParameters(node, inputVolumeA=t1, inputVolumeB=t2, method="average", device="cpu", showEdges=False)
    output = logic.processParameterNode(node)
    assert output.volume.GetName() == "T1 + T2 (Average)" and output.edges is None
    # The default rule/strength are in the node but were not passed to a method without those options.
    assert node.GetParameter("fusionRule") in ("max", "add", "average", "softmax")


def test_unusable_saved_values_fall_back_to_defaults(mrml):
    """A scene saved with a method this version lacks (or a garbled number) still opens in the widget."""
    logic = MedFusionLogic()
    node = logic.getParameterNode()
    node.SetParameter("method", "a-method-from-the-future")
    node.SetParameter("edgeStrength", "lots")
    node.SetParameter("presetA", "ct:soft")
    logic.setDefaultParameters(node)
    values = logic.readParameters(node)
    assert values["method"] == PARAMETERS[PARAMETER_NAMES.index("method")].default
    assert values["edgeStrength"] == PARAMETERS[PARAMETER_NAMES.index("edgeStrength")].default
    assert values["presetA"] == "ct:soft"  # valid values are kept


def test_a_saved_edge_strength_outside_the_slider_is_clamped_as_the_slider_shows_it(mrml, stroke):
    t1, t2 = stroke
    logic = MedFusionLogic()
    node = logic.getParameterNode()
    logic.setDefaultParameters(node)
    low, high = PARAMETERS[PARAMETER_NAMES.index("edgeStrength")].limits
    node.SetParameter("edgeStrength", str(high + 3.0))  # e.g. a scene written by a script
    assert logic.readParameters(node)["edgeStrength"] == high  # what runs is what the slider shows
    logic.setDefaultParameters(node)  # what the widget does before binding: the saved value itself is fixed
    assert float(node.GetParameter("edgeStrength")) == high
    logic.setParameters(node, edgeStrength=low - 1.0)
    assert float(node.GetParameter("edgeStrength")) == low
    logic.setParameters(node, inputVolumeA=t1, inputVolumeB=t2, method="mfenet")
    assert logic.optionsFromParameters(node)["edgeStrength"] == low


def test_rule_and_strength_go_only_to_methods_that_declare_them():
    for info in REGISTRY.infos():
        options = method_options_for(info.name, "add", 0.5)
        assert ("rule" in options) == ("rule" in info.options)
        assert ("edge_weight" in options) == ("edge_weight" in info.options)
    assert method_options_for("laplacian", "add", 0.5) == {}
    with pytest.raises(InputError):
        MedFusionLogic().setParameters(slicer.vtkMRMLScriptedModuleNode(), method="nonsense")


# ---------------------------------------------------------------------------------------------- self-test ----

def test_module_self_test_passes_on_slicer_core(mrml):
    outcome = run_self_test(mrml.scene, device="cpu", log=lambda message: None)
    assert outcome["laplacian"] == "passed" and outcome["worker"] == "passed"
    if "mfenet" in REGISTRY.names():
        assert outcome["mfenet"] == "passed"
    else:
        assert outcome["mfenet"].startswith("skipped")


# --- Colour fusion of a scalar functional volume (issue 6) ----------------------------------------------------

@pytest.fixture
def ct_pet(mrml, sts_dir):
    """CT (A) and the SUV PET (B, a scalar volume on its own coarse grid) shown with the PET-Heat colour node."""
    ct = mrml.load_volume(sts_dir / "CT.nii.gz", "CT")
    pet = mrml.load_volume(sts_dir / "PET.nii.gz", "PET")
    heat = mrml.scene.GetFirstNode("PET-Heat", "vtkMRMLColorNode")
    display = pet.GetDisplayNode()
    display.SetAndObserveColorNodeID(heat.GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevel(6.0, 3.0)  # SUV 0..6, as a reader would set it
    return ct, pet, heat


def _heat_colours(heat, suv, low, high):
    from MedFusionLib.colour import apply_colour_table
    from MedFusionLib.mrml_convert import colour_table_of

    return apply_colour_table(np.clip((suv - low) / (high - low), 0, 1), colour_table_of(heat))


def test_scalar_pet_with_its_own_colour_table_gives_rgb_on_the_ct_grid(mrml, ct_pet):
    ct, pet, heat = ct_pet
    output = MedFusionLogic().process(ct, pet, method="laplacian", presetA="ct:soft", colourB="volume",
                                      device="cpu")
    volume = output.volume
    assert volume.IsA("vtkMRMLVectorVolumeNode")
    _assert_reference_geometry(output, ct)
    rgb = voxel_array(volume)
    assert rgb.shape[-1] == 3 and rgb.dtype == np.uint8
    # The displayed window (SUV 0..6) was used: where the PET is hot, the fused hue is PET-Heat's there.
    window = output.result.windows["B"]
    assert (window.low, window.high) == (pytest.approx(0.0), pytest.approx(6.0))
    pet_image = sitk.Cast(read_volume(mrml_path(pet)), sitk.sitkFloat32)
    ct_image = read_volume(mrml_path(ct))
    suv = sitk.GetArrayFromImage(sitk.Resample(pet_image, ct_image, sitk.Transform(), sitk.sitkLinear, 0.0))
    expected = (_heat_colours(heat, suv, 0.0, 6.0) * 255).round().astype(np.uint8)
    fused = sitk.GetArrayFromImage(output.result.fused)
    hot = suv > 3.0  # well inside the tumour ring
    assert hot.sum() > 500
    import cv2

    def hue(x):
        return cv2.cvtColor(np.ascontiguousarray(x.reshape(-1, x.shape[-2], 3)), cv2.COLOR_RGB2HSV_FULL)[..., 0]
    diff = np.abs(hue(fused).astype(int) - hue(expected).astype(int)).reshape(suv.shape)[hot]
    diff = np.minimum(diff, 256 - diff) * 360 / 256
    assert np.mean(diff <= 15.0) >= 0.95, np.mean(diff <= 15.0)


def test_colour_node_by_name_and_bad_choices(mrml, ct_pet):
    ct, pet, _ = ct_pet
    logic = MedFusionLogic()
    by_name = logic.process(ct, pet, colourB="PET-Heat", presetB="pet", **FAST)
    assert by_name.volume.IsA("vtkMRMLVectorVolumeNode")
    grey = logic.process(ct, pet, colourB="none", presetB="pet", **FAST)
    assert grey.volume.IsA("vtkMRMLScalarVolumeNode") and not grey.volume.IsA("vtkMRMLVectorVolumeNode")
    ids_before = mrml.node_ids()
    with pytest.raises(InputError, match="no colour node named 'Nope'"):
        logic.process(ct, pet, colourB="Nope", **FAST)
    scalar_output = grey.volume
    with pytest.raises(InputError, match="select a vector volume"):
        logic.process(ct, pet, colourB="PET-Heat", outputVolume=scalar_output, **FAST)
    assert mrml.node_ids() == ids_before


def test_colour_mode_follows_the_colour_node_and_can_be_forced(mrml, ct_pet):
    ct, pet, _ = ct_pet
    logic = MedFusionLogic()
    heat = logic.process(ct, pet, colourB="PET-Heat", presetB="pet", **FAST)
    assert heat.result.colour_mode == "overlay"  # PET-Heat: brightness encodes uptake
    # Slicer's PET-Rainbow runs black - orange - yellow - white (brightness encodes uptake); PET-Rainbow2 is a
    # true rainbow (hue encodes uptake).
    assert logic.process(ct, pet, colourB="PET-Rainbow", presetB="pet", **FAST).result.colour_mode == "overlay"
    rainbow = logic.process(ct, pet, colourB="PET-Rainbow2", presetB="pet", **FAST)
    assert rainbow.result.colour_mode == "ycbcr"
    forced = logic.process(ct, pet, colourB="PET-Heat", presetB="pet", colourMode="ycbcr", **FAST)
    assert forced.result.colour_mode == "ycbcr"


def mrml_path(node):
    return node.GetStorageNode().GetFileName()


def test_fusion_rule_and_edge_strength_reach_mfenet(mrml, stroke):
    """The widget's rule and edge strength are MFEnet options: they change the result, for MFEnet only."""
    t1, t2 = stroke
    crop = dict(method="mfenet", device="cpu", edges=False)
    logic = MedFusionLogic()
    # A small oblique block keeps the network run short.
    from MedFusionLib.mrml_convert import add_volume_from_sitk, volume_node_to_sitk

    a = add_volume_from_sitk(mrml.scene, volume_node_to_sitk(t1)[30:90, 40:110, 60:66], "T1 block")
    b = add_volume_from_sitk(mrml.scene, volume_node_to_sitk(t2)[30:90, 40:110, 60:66], "T2 block")
    plain = voxel_array(logic.process(a, b, fusionRule="max", edgeStrength=0.0, **crop).volume)
    edged = voxel_array(logic.process(a, b, fusionRule="max", edgeStrength=1.0, **crop).volume)
    added = voxel_array(logic.process(a, b, fusionRule="add", edgeStrength=0.0, **crop).volume)
    assert np.count_nonzero(edged > plain + 0.5) > 50  # edge lines drawn (w = 1 saturates edge pixels)
    assert np.abs(added - plain).max() > 0.05  # a different feature-fusion rule
    # For a method without these options they are ignored, not an error.
    ignored = logic.process(a, b, method="average", device="cpu", edges=False, fusionRule="softmax",
                            edgeStrength=2.0)
    without = logic.process(a, b, method="average", device="cpu", edges=False)
    np.testing.assert_array_equal(voxel_array(ignored.volume), voxel_array(without.volume))


def test_every_method_option_set_on_the_parameter_node_reaches_its_method(mrml, stroke):
    """Options the widget builds from the registry (EDPSN's eem_weight, Laplacian's levels) are stored in the
    parameter node and reach the method, as MFEnet's two do; a saved scene without them gets their defaults."""
    t1, t2 = stroke
    from MedFusionLib.mrml_convert import add_volume_from_sitk, volume_node_to_sitk

    a = add_volume_from_sitk(mrml.scene, volume_node_to_sitk(t1)[30:90, 40:110, 60:64], "T1 block")
    b = add_volume_from_sitk(mrml.scene, volume_node_to_sitk(t2)[30:90, 40:110, 60:64], "T2 block")
    logic = MedFusionLogic()
    node = logic.getParameterNode()
    logic.setDefaultParameters(node)
    assert node.GetParameter("eemWeight") == "1.0" and node.GetParameter("levels") == "4"
    logic.setParameters(node, inputVolumeA=a, inputVolumeB=b, method="edpsn", device="cpu", showEdges=False)
    with_eem = voxel_array(logic.processParameterNode(node).volume)
    logic.setParameters(node, eemWeight=0.0)
    assert logic.readParameters(node)["eemWeight"] == 0.0
    without = voxel_array(logic.processParameterNode(node).volume)
    direct = voxel_array(logic.process(a, b, method="edpsn", device="cpu", edges=False,
                                       methodOptions={"eem_weight": 0.0}).volume)
    np.testing.assert_array_equal(without, direct)  # the node's value is the option, nothing else
    assert np.abs(with_eem - without).max() > 0.01
    logic.setParameters(node, method="laplacian", levels=1)
    one = voxel_array(logic.processParameterNode(node).volume)
    logic.setParameters(node, levels=3)
    assert np.abs(voxel_array(logic.processParameterNode(node).volume) - one).max() > 0.01
    with pytest.raises(InputError, match="levels .* is not a whole number"):
        logic.setParameters(node, levels=2.5)
    with pytest.raises(InputError, match="no option 'eem_weight'"):  # the node's names, not the registry's
        logic.process(a, b, method="edpsn", eem_weight=0.5)


def test_registration_check_sees_the_scene_transform(mrml, stroke):
    """B under a 6 mm translation (a parent transform, as after a wrong registration) is reported."""
    t1, t2 = stroke
    t2.SetAndObserveTransformNodeID(_translation(mrml.scene, (4.0, -3.0, 3.5)).GetID())
    output = MedFusionLogic().process(t1, t2, edges=False, **FAST)
    assert abs(output.result.registration_offset_mm - np.linalg.norm((4.0, -3.0, 3.5))) <= 1.5
    assert any("seems shifted" in w and "General Registration (BRAINS)" in w for w in output.warnings)
    quiet = MedFusionLogic().process(t1, t2, edges=False, checkRegistration=False, **FAST)
    assert quiet.result.registration_offset_mm is None
    assert not any("seems shifted" in w for w in quiet.warnings)


def test_edge_detail_parameter_matches_the_engine():
    from MedFusionLib import edge_overlay
    from MedFusionLib.logic import EDGE_DETAIL_DEFAULT, EDGE_DETAIL_RANGE

    assert EDGE_DETAIL_RANGE == edge_overlay.DETAIL_RANGE and EDGE_DETAIL_DEFAULT == edge_overlay.DEFAULT_DETAIL


def test_edge_detail_parameter_reaches_the_overlay(mrml, stroke):
    """The widget's Edge detail slider (parameter edgeDetail) asks the engine for fewer or more edges."""
    t1, t2 = stroke
    logic = MedFusionLogic()
    node = logic.getParameterNode()
    logic.setDefaultParameters(node)
    counts = []
    for detail in (0.0, 1.0):
        logic.setParameters(node, inputVolumeA=t1, inputVolumeB=t2, method="average", device="cpu",
                            edgeDetail=detail, checkRegistration=False)
        output = logic.processParameterNode(node)
        counts.append(np.count_nonzero(sitk.GetArrayFromImage(output.result.edges)))
    assert counts[1] > 2 * counts[0] > 0
