"""Method options declared once (the registry's ``Option``) -> the Slicer controls, the parameter node, the logic's
keywords, the CLI listing and the evaluation's method specs (Qt-free: logic/controls.py and logic/keywords.py).

MedFusion.py only turns the specs into Qt widgets; what it builds is decided here, where it can be tested.
"""
from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from MedFusionLib.cli import main
from MedFusionLib.errors import InputError
from MedFusionLib.logic import (ALL_PARAMETERS, EDGE_STRENGTH_RANGE, OPTION_CONTROLS, OPTION_PARAMETERS,
                                PARAMETER_NAMES, PARAMETERS)
from MedFusionLib.logic.controls import CHECKBOX, COMBO, LINE_EDIT, SLIDER, SPIN, control_specs, method_options, spec_for
from MedFusionLib.logic.keywords import KEYWORDS, LOGIC_KEYWORDS, SETTING_KEYWORDS, settings_from_keywords
from MedFusionLib.methods import DEFAULT_METHOD, REGISTRY
from MedFusionLib.methods.base import Option
from MedFusionLib.methods.registry import MethodInfo, parse_method_spec, parse_options
from MedFusionLib.settings import FusionSettings

UI_FILE = Path(__file__).resolve().parents[1] / "MedFusion" / "Resources" / "UI" / "MedFusion.ui"


def test_every_registered_option_has_exactly_one_control():
    declared = {(info.name, name) for info in REGISTRY.infos() for name in info.options}
    controlled = [(method, spec.option) for spec in OPTION_CONTROLS for method in spec.methods]
    assert sorted(controlled) == sorted(declared)
    for spec in OPTION_CONTROLS:
        for method in spec.methods:
            option = REGISTRY.get(method).options[spec.option]
            assert spec.default == option.default and option.help[1:] in spec.tooltip
            assert option.describe() in spec.tooltip
    names = [spec.parameter for spec in OPTION_CONTROLS]
    assert len(set(names)) == len(names)
    assert not set(names) & (set(SETTING_KEYWORDS) | set(LOGIC_KEYWORDS))  # no option hides a setting
    # Laplacian and DWT declare 'levels' differently (defaults 4 and 3): one control, one value each.
    levels = {spec.methods: (spec.parameter, spec.default) for spec in OPTION_CONTROLS if spec.option == "levels"}
    assert levels == {("laplacian",): ("levels", 4), ("dwt",): ("dwtLevels", 3)}


def test_a_new_method_never_renames_a_saved_parameter():
    """A method added later with an option name already declared differently gets a name of its own."""
    rule = Option("mean", "how to merge", choices=("mean", "max"))
    newnet = MethodInfo(name="newnet", family="cnn", title="NewNet", kind="network", module="newnet",
                        summary="s", reference="r", options={"rule": rule, "levels": Option(2, "levels", minimum=1)})
    before = {(spec.methods, spec.option): spec.parameter for spec in OPTION_CONTROLS}
    after = {(spec.methods, spec.option): spec.parameter
             for spec in control_specs([*REGISTRY.infos(), newnet], reserved=(*SETTING_KEYWORDS, *LOGIC_KEYWORDS))}
    assert {key: after[key] for key in before} == before  # fusionRule, levels, dwtLevels, ... unchanged
    # MFEnet's rule is stored as fusionRule, so the plain name is free; 'levels' is Laplacian's.
    assert after[(("newnet",), "rule")] == "rule" and after[(("newnet",), "levels")] == "newnetLevels"


def test_control_kinds_follow_the_declaration():
    by_option = {spec.option: spec for spec in OPTION_CONTROLS if spec.option != "levels"}
    rule = by_option["rule"]
    assert rule.kind == COMBO and rule.choices == REGISTRY.get("mfenet").options["rule"].choices
    edge, eem = by_option["edge_weight"], by_option["eem_weight"]
    assert edge.kind == eem.kind == SLIDER
    assert (edge.minimum, edge.maximum) == EDGE_STRENGTH_RANGE == (0.0, 2.0)  # the slider the .ui always had
    assert eem.limits == (0.0, 2.0) and 0 < eem.step < 0.1 and eem.decimals >= 2
    assert by_option["wavelet"].kind == LINE_EDIT
    assert all(spec.kind == SPIN and spec.decimals == 0 and spec.minimum == 1 for spec in OPTION_CONTROLS
               if spec.option == "levels")
    # Kinds no registered method declares yet.
    assert spec_for("x", "mask", Option(True, "use a mask"), ("m",)).kind == CHECKBOX
    open_float = spec_for("x", "gain", Option(0.5, "gain"), ("m",))
    assert open_float.kind == SPIN and open_float.decimals > 0 and open_float.minimum < 0 < open_float.maximum
    bounded = spec_for("x", "alpha", Option(0.5, "mix", minimum=0, maximum=1), ("m",))
    assert bounded.kind == SLIDER and bounded.limits == (0.0, 1.0)
    whole = spec_for("x", "taps", Option(3, "taps", choices=(3, 5, 7)), ("m",))
    assert whole.kind == COMBO and whole.choices == (3, 5, 7)


def test_a_declared_maximum_is_enforced_and_a_slider_end_is_not():
    alpha = Option(0.5, "mix", minimum=0, maximum=1)
    assert alpha.describe() == "number from 0 to 1" and alpha.check("m", "alpha", 1) == 1
    with pytest.raises(InputError, match="at most 1"):
        alpha.check("m", "alpha", 1.5)
    # MFEnet's slider ends at 2; the CLI and API still take more.
    assert REGISTRY.get("mfenet").check_options({"edge_weight": 3.0}) == {"edge_weight": 3.0}


def test_the_parameter_node_takes_its_options_from_the_controls():
    by_name = {p.name: p for p in ALL_PARAMETERS}
    for spec in OPTION_CONTROLS:
        parameter = by_name[spec.parameter]
        assert parameter.control is spec and parameter.default == spec.default and parameter.limits == spec.limits
        assert parameter.choices == tuple(map(str, spec.choices))
    # The wrapper's fields keep MFEnet's two under their old names; every other option is built by the widget.
    assert {p.name for p in PARAMETERS if p.control} == {"fusionRule", "edgeStrength"}
    assert {p.name for p in OPTION_PARAMETERS} == {s.parameter for s in OPTION_CONTROLS} - set(PARAMETER_NAMES)
    assert {p.kind for p in OPTION_PARAMETERS} >= {"int", "float", "str"}


def test_the_ui_controls_of_mfenet_match_their_specs():
    widgets = {w.get("name"): w for w in ET.parse(UI_FILE).getroot().iter("widget")}
    for name, kind, widget_class in (("fusionRule", COMBO, "QComboBox"), ("edgeStrength", SLIDER, "ctkSliderWidget")):
        spec = next(p.control for p in PARAMETERS if p.name == name)
        bound = [w for w in widgets.values()
                 if any(p.get("name") == "SlicerParameterName" and p[0].text == name for p in w.findall("property"))]
        assert len(bound) == 1 and bound[0].get("class") == widget_class and spec.kind == kind
        if kind == SLIDER:
            numbers = {p.get("name"): float(p[0].text) for p in bound[0].findall("property")
                       if p.get("name") in ("minimum", "maximum")}
            assert (numbers["minimum"], numbers["maximum"]) == spec.limits


def test_the_parameter_node_defaults_are_the_settings_defaults():
    """The node's defaults, as the logic's keywords, make exactly the default FusionSettings."""
    keywords = {p.keyword: p.default for p in ALL_PARAMETERS
                if p.kind != "node" and p.keyword in KEYWORDS and p.keyword != "method"}
    made = settings_from_keywords(DEFAULT_METHOD, keywords)
    assert made == FusionSettings.create(method=DEFAULT_METHOD)
    for parameter in ALL_PARAMETERS:
        if parameter.keyword in SETTING_KEYWORDS and parameter.keyword not in ("method", "edgeDetail"):
            field = SETTING_KEYWORDS[parameter.keyword]
            assert parameter.default == getattr(FusionSettings(), field), parameter.name


def test_keywords_reach_only_the_methods_that_declare_them():
    options = dict(fusionRule="add", edgeStrength=1, eemWeight=0.5, levels=6, dwtLevels=2, wavelet="haar")
    assert settings_from_keywords("mfenet", options).method_options == {"rule": "add", "edge_weight": 1.0}
    assert settings_from_keywords("edpsn", options).method_options == {"eem_weight": 0.5}
    assert settings_from_keywords("laplacian", options).method_options == {"levels": 6}
    assert settings_from_keywords("dwt", options).method_options == {"levels": 2, "wavelet": "haar"}
    assert settings_from_keywords("average", options).method_options == {}
    # methodOptions win over the controls (as before): a script's explicit options are what runs.
    assert settings_from_keywords("edpsn", dict(eemWeight=0.5, methodOptions={"eem_weight": 0.0})) \
        .method_options == {"eem_weight": 0.0}
    assert method_options(OPTION_CONTROLS, "mfenet", {"fusionRule": None}) == {}  # None: not set
    with pytest.raises(InputError, match="no option 'edgeWeight'"):
        settings_from_keywords("mfenet", {"edgeWeight": 1.0})
    with pytest.raises(InputError, match="must be at least 0"):
        settings_from_keywords("edpsn", {"eemWeight": -1.0})


def test_a_new_option_appears_in_the_cli_the_evaluation_specs_and_the_slicer_controls(monkeypatch, capsys):
    """A new network's option, declared once on its registry entry, reaches every front door with no edit."""
    gain = Option(0.25, "contrast gain of the new network (the paper's: 0.25)", minimum=0, maximum=1)
    info = MethodInfo(name="newnet", family="cnn", title="NewNet", kind="network", module="newnet",
                      summary="a network added in a test", reference="none", options={"gain": gain})
    monkeypatch.setitem(REGISTRY._infos, info.name, info)
    assert main(["methods"]) == 0
    listing = capsys.readouterr().out
    assert "--option gain=0.25 (number from 0 to 1): contrast gain" in listing
    with pytest.raises(SystemExit):
        main(["fuse", "--help"])
    fuse_help = " ".join(capsys.readouterr().out.split())
    assert "newnet: gain=0.25" in fuse_help and "mfenet: rule=max, edge_weight=0.0" in fuse_help  # medfusion fuse -h
    assert parse_method_spec("newnet[gain=0.5]", REGISTRY) == ("newnet", {"gain": 0.5})  # evaluate --methods
    assert parse_options(info, ["gain=1"]) == {"gain": 1}  # fuse / batch --option
    with pytest.raises(InputError, match="at most 1"):
        parse_method_spec("newnet[gain=2]", REGISTRY)
    spec = next(s for s in control_specs(REGISTRY.infos(), reserved=(*SETTING_KEYWORDS, *LOGIC_KEYWORDS)) if s.methods == ("newnet",))
    assert (spec.parameter, spec.kind, spec.limits, spec.default) == ("gain", SLIDER, (0.0, 1.0), 0.25)
    assert "Contrast gain" in spec.tooltip and "from 0 to 1" in spec.tooltip
    settings = FusionSettings.create(method="newnet", method_options={"gain": 0.75})  # the Python API
    assert dataclasses.asdict(settings)["method_options"] == {"gain": 0.75}
