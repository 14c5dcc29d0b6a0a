"""Fault cases of the Slicer logic (issue 16): a saved parameter node with a value of the wrong type is one
sentence, not a traceback, and the scene is left as it was."""
from __future__ import annotations

import pytest

from conftest_slicer import mrml, slicer  # noqa: F401  (fixture and the slicer-core module)
from MedFusionLib.errors import InputError
from MedFusionLib.logic import MedFusionLogic


@pytest.fixture
def stroke(mrml, stroke_dir):
    return mrml.load_volume(stroke_dir / "T1.nii.gz", "T1"), mrml.load_volume(stroke_dir / "T2.nii.gz", "T2")


@pytest.mark.parametrize("text", ["abc", "nan", "inf"])
def test_a_saved_edge_strength_that_is_not_a_number_is_one_sentence(mrml, stroke, text):
    t1, t2 = stroke
    logic = MedFusionLogic()
    node = logic.getParameterNode()
    logic.setDefaultParameters(node)
    logic.setParameters(node, inputVolumeA=t1, inputVolumeB=t2, method="mfenet", device="cpu", showEdges=False)
    node.SetParameter("edgeStrength", text)  # what a hand-edited or damaged scene file holds
    before = mrml.scene.GetNumberOfNodes()
    with pytest.raises(InputError, match="edgeStrength .* is not a finite number") as caught:
        logic.processParameterNode(node)
    assert str(caught.value).endswith(".")
    assert mrml.scene.GetNumberOfNodes() == before


def test_method_options_of_the_wrong_type_from_the_logic_are_one_sentence(mrml, stroke):
    t1, t2 = stroke
    before = mrml.scene.GetNumberOfNodes()
    with pytest.raises(InputError, match="must be a whole number"):
        MedFusionLogic().process(t1, t2, method="laplacian", device="cpu", methodOptions={"levels": "abc"})
    assert mrml.scene.GetNumberOfNodes() == before


def test_setting_a_number_parameter_to_text_is_one_sentence(mrml):
    logic = MedFusionLogic()
    node = logic.getParameterNode()
    logic.setDefaultParameters(node)
    logic.setParameters(node, edgeStrength=1.5)
    with pytest.raises(InputError, match="edgeStrength .* is not a finite number"):
        logic.setParameters(node, edgeStrength="strong")
    assert float(node.GetParameter("edgeStrength")) == 1.5  # the node keeps its value
