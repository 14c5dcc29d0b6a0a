"""The parameter node: its parameters' names, types and defaults, and their serialisation. camelCase lives here,
at the widget boundary (Slicer's convention for parameter nodes); the rest of MedFusionLib is snake_case.

Nothing is declared twice: a setting's parameter takes its default from the FusionSettings field it feeds
(settings.py; its keyword of ``MedFusionLogic.prepare`` is that field in camelCase, keywords.py), a method
option's parameter takes its type, default, choices and range from the registry's ``Option`` (controls.py).

:data:`PARAMETERS` are the fields of the widget's ``parameterNodeWrapper`` class (MedFusion.py declares the same
names; a test checks it): the settings, and MFEnet's rule and edge weight under their names of earlier versions.
:data:`OPTION_PARAMETERS` hold every other method option; the widget builds their controls from the registry
and binds them itself. Values are stored the way the wrapper stores them (enums by member name, bools as
"True"/"False", nodes as references), so a scene saved from one side loads on the other.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..errors import InputError
from ..functional_colour import COLOUR_MODES
from ..methods import DEFAULT_METHOD, REGISTRY
from ..settings import validate_edge_detail
from .controls import LEGACY_NAMES, ControlSpec, camel_case, method_options
from .keywords import OPTION_CONTROLS, setting_default

log = logging.getLogger(__name__)

MODULE_NAME = "MedFusion"
AXES = ("axial", "coronal", "sagittal")
DEVICES = ("auto", "cpu", "cuda")
RULE_OPTION = "rule"
EDGE_WEIGHT_OPTION = "edge_weight"
SCALAR_WINDOW_LEVEL = (1.0, 0.5)  # the fused scalar volume is float32 in [0, 1]
RGB_WINDOW_LEVEL = (255.0, 127.5)  # the fused RGB volume is uint8 0..255
# Segment colours of the edge overlay (RGB 0..1): A amber, B cyan; label 3 (both) belongs to both segments.
EDGE_COLOURS = ((1.0, 0.75, 0.0), (0.0, 0.85, 1.0))
EDGE_SEGMENT_IDS = ("MedFusionEdgesA", "MedFusionEdgesB")
# Colouring of a scalar functional B: none, its own display colour table, or a colour node by name.
COLOUR_NONE, COLOUR_OWN = "none", "volume"


_CONTROLS = {spec.parameter: spec for spec in OPTION_CONTROLS}
RULE_PARAMETER, EDGE_STRENGTH_PARAMETER = (LEGACY_NAMES[("mfenet", option)] for option in (RULE_OPTION,
                                                                                         EDGE_WEIGHT_OPTION))
FUSION_RULES = _CONTROLS[RULE_PARAMETER].choices  # MFEnet's feature-fusion rules
EDGE_STRENGTH_RANGE = _CONTROLS[EDGE_STRENGTH_PARAMETER].limits  # MFEnet's edge weight on its slider


@dataclass(frozen=True)
class Parameter:
    """One entry of the parameter node. ``kind``: node, enum, str, bool, float or int."""
    name: str
    kind: str
    default: Any = None
    node_class: Optional[str] = None  # for kind "node"
    choices: Tuple[str, ...] = ()  # for kind "enum"
    help: str = ""
    limits: Optional[Tuple[float, float]] = None  # for kinds "float" and "int": the control's range
    keyword: str = ""  # the keyword of MedFusionLogic.prepare it feeds ("" = the name)
    control: Optional[ControlSpec] = None  # a method option's control (controls.py)

    def __post_init__(self):
        object.__setattr__(self, "keyword", self.keyword or self.name)

    def clamp(self, value: float) -> float:
        """A number as the widget shows it: a slider cannot show (nor should the run use) a value outside it."""
        number = float(min(max(value, self.limits[0]), self.limits[1])) if self.limits else float(value)
        return int(round(number)) if self.kind == "int" else number


def _setting(name: str, kind: str, field: str, help: str, **more) -> Parameter:
    """A parameter feeding FusionSettings.``field``: its default is that field's (one declaration)."""
    default = setting_default(field)
    if field == "edge_detail":
        default = validate_edge_detail(default)  # None means the declared detail; a slider needs the number
    return Parameter(name, kind, default, help=help, keyword=camel_case(field), **more)


def _option(spec: ControlSpec) -> Parameter:
    """A parameter holding a method option's control value (default, choices and range from the registry)."""
    return Parameter(spec.parameter, spec.parameter_kind, spec.default, choices=tuple(map(str, spec.choices)),
                     limits=spec.limits, control=spec,
                     help=f"{spec.tooltip} (methods: {', '.join(spec.methods)})")


# The fields of the widget's parameterNodeWrapper (MedFusion.py), in its order.
PARAMETERS: Tuple[Parameter, ...] = (
    Parameter("inputVolumeA", "node", None, node_class="vtkMRMLScalarVolumeNode", keyword="volumeA",
              help="reference volume (its grid and geometry are the output's)"),
    Parameter("inputVolumeB", "node", None, node_class="vtkMRMLScalarVolumeNode", keyword="volumeB",
              help="second volume, resampled onto A"),
    Parameter("method", "enum", DEFAULT_METHOD, choices=tuple(REGISTRY.names()), help="fusion method"),
    _option(_CONTROLS[RULE_PARAMETER]),
    _option(_CONTROLS[EDGE_STRENGTH_PARAMETER]),
    _setting("axis", "enum", "axis", "slicing axis", choices=AXES),
    _setting("presetA", "str", "preset_a", "intensity preset of A"),
    _setting("presetB", "str", "preset_b", "intensity preset of B"),
    Parameter("colourB", "str", COLOUR_NONE,
              help="colour a scalar functional B (PET, SPECT): none, 'volume' (its own colour table and window), "
                   "or the name of a colour node (e.g. PET-Heat); the fused volume is then RGB"),
    _setting("colourMode", "enum", "colour_mode",
             "how the functional colour is shown: auto, overlay (thresholded colour on the grey fusion) or "
             "ycbcr (brightness from the fusion, colour kept); see MedFusionLib.functional_colour",
             choices=COLOUR_MODES),
    _setting("device", "enum", "device", "auto, cpu or cuda", choices=DEVICES),
    _setting("showEdges", "bool", "edges", "compute the edge overlay segmentation"),
    _setting("edgeDetail", "float", "edge_detail", "fewer (0) or more (1) edges in the overlay"),
    _setting("checkRegistration", "bool", "check_registration",
             "warn when B seems shifted from A (registration check)"),
    Parameter("outputVolume", "node", None, node_class="vtkMRMLScalarVolumeNode",
              help="fused volume to overwrite; empty = create a new one"),
    Parameter("outputEdges", "node", None, node_class="vtkMRMLSegmentationNode",
              help="edge segmentation to overwrite; empty = create a new one"),
)
PARAMETER_NAMES: Tuple[str, ...] = tuple(p.name for p in PARAMETERS)
# The other method options' controls: the widget builds them from the registry (no wrapper field, no .ui entry)
# and they are stored in the same node under these names.
OPTION_PARAMETERS: Tuple[Parameter, ...] = tuple(_option(spec) for spec in OPTION_CONTROLS
                                                 if spec.parameter not in PARAMETER_NAMES)
ALL_PARAMETERS = PARAMETERS + OPTION_PARAMETERS
_BY_NAME = {p.name: p for p in ALL_PARAMETERS}


def method_accepts(method: str, option: str) -> bool:
    """Whether the registry entry of ``method`` declares ``option`` (e.g. MFEnet's 'rule', 'edge_weight')."""
    try:
        return option in REGISTRY.get(method).options
    except InputError:
        return False


def method_options_for(method: str, fusionRule=None, edgeStrength=None, extra: Optional[dict] = None) -> dict:
    """Method options to pass to the engine: the rule and edge strength only where the method declares them
    (``extra`` wins); the general form, for every control, is controls.method_options."""
    values = {RULE_PARAMETER: fusionRule, EDGE_STRENGTH_PARAMETER: edgeStrength}
    return {**method_options(OPTION_CONTROLS, REGISTRY.get(method).name, values), **(extra or {})}


def _parameter_number(parameter: Parameter, text) -> float:
    """A number for or from a parameter node (a saved scene can hold anything): finite (and whole for an int
    parameter), or one sentence."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = float("nan")
    if not np.isfinite(value):
        raise InputError(f"The MedFusion parameter {parameter.name} = '{text}' is not a finite number; set it again "
                         f"in the module.")
    if parameter.kind == "int" and value != int(value):
        raise InputError(f"The MedFusion parameter {parameter.name} = '{text}' is not a whole number; set it again "
                         f"in the module.")
    return value


def method_help_html() -> str:
    """Every registered method with its paper, for the module's help text and tooltips."""
    items = "".join(f"<li><b>{info.title}</b> (<code>{info.name}</code>): {info.summary} <i>{info.reference}</i></li>"
                    for info in REGISTRY.infos())
    return f"<ul>{items}</ul>"


try:  # inside Slicer: the real base class (needs Qt)
    from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic as _LogicBase
except ImportError:  # slicer-core (pytest): the same parameter-node contract, without Qt

    class _LogicBase:
        def __init__(self, parent=None):
            self.moduleName = self.__class__.__name__
            if self.moduleName.endswith("Logic"):
                self.moduleName = self.moduleName[:-5]
            self.isSingletonParameterNode = True

        def getParameterNode(self):
            import slicer

            node = slicer.mrmlScene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
            if node:
                if node.GetAttribute("ModuleName") != self.moduleName:
                    node.SetAttribute("ModuleName", self.moduleName)
                return node
            return slicer.mrmlScene.AddNode(self.createParameterNode())

        def createParameterNode(self):
            import slicer

            node = slicer.mrmlScene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
            node.UnRegister(None)
            node.SetSingletonTag(self.moduleName)
            node.SetAttribute("ModuleName", self.moduleName)
            node.SetName(slicer.mrmlScene.GenerateUniqueName(self.moduleName))
            return node


class ParameterNodeMixin:
    """MedFusionLogic's parameter-node methods (names shared with the widget)."""

    # ---------------------------------------------------------------- parameter node (shared names) ---------
    @staticmethod
    def _write(node, parameter: Parameter, value) -> None:
        if parameter.kind == "node":
            node.SetParameter(parameter.name, "")  # what the wrapper writes, so that it finds the parameter
            node.SetNodeReferenceID(parameter.name, value.GetID() if value is not None else None)
        elif parameter.kind == "bool":
            node.SetParameter(parameter.name, "True" if value else "False")
        elif parameter.kind == "enum":
            if value not in parameter.choices:
                raise InputError(f"'{value}' is not a valid {parameter.name}; choose one of: "
                                 f"{', '.join(parameter.choices)}.")
            node.SetParameter(parameter.name, str(value))
        elif parameter.kind in ("float", "int"):
            node.SetParameter(parameter.name, str(parameter.clamp(_parameter_number(parameter, value))))
        else:
            node.SetParameter(parameter.name, str(value))

    def setDefaultParameters(self, parameterNode) -> None:
        """Write the default of every parameter the node lacks (as the wrapper does) or holds an unusable value
        of: an enum value no longer offered (a scene saved with a method this version does not have) or a
        number that does not parse. The widget's typed wrapper could not read those back."""
        wasModified = parameterNode.StartModify()
        try:
            for parameter in ALL_PARAMETERS:
                if not parameterNode.HasParameter(parameter.name):
                    self._write(parameterNode, parameter, parameter.default)
                    continue
                text = parameterNode.GetParameter(parameter.name)
                usable = True
                if parameter.kind == "enum":
                    usable = text in parameter.choices
                elif parameter.kind in ("float", "int"):
                    try:
                        number = _parameter_number(parameter, text)
                    except InputError:
                        usable = False
                    if usable and parameter.clamp(number) != number:  # e.g. a scene saved by a script
                        log.warning("MedFusion: parameter %s = %s is outside %s; using %s, as the slider shows.",
                                    parameter.name, text, parameter.limits, parameter.clamp(number))
                        self._write(parameterNode, parameter, number)
                        continue
                elif parameter.kind == "bool":
                    usable = text in ("True", "False")
                if not usable:
                    log.warning("MedFusion: parameter %s = '%s' is not valid here; using '%s'.",
                                parameter.name, text, parameter.default)
                    self._write(parameterNode, parameter, parameter.default)
        finally:
            parameterNode.EndModify(wasModified)

    def setParameters(self, parameterNode, **values) -> None:
        """Set parameters by name, e.g. ``setParameters(node, method="gff", inputVolumeA=ct)``."""
        unknown = sorted(set(values) - set(_BY_NAME))
        if unknown:
            raise InputError(f"Unknown MedFusion parameter(s): {', '.join(unknown)}.")
        wasModified = parameterNode.StartModify()
        try:
            for name, value in values.items():
                self._write(parameterNode, _BY_NAME[name], value)
        finally:
            parameterNode.EndModify(wasModified)

    def readParameters(self, parameterNode) -> Dict[str, Any]:
        """Every parameter's value (defaults where missing), typed: nodes, str, bool, float, int, an option's
        choice as declared."""
        values = {}
        for parameter in ALL_PARAMETERS:
            if parameter.kind == "node":
                values[parameter.name] = parameterNode.GetNodeReference(parameter.name)
                continue
            if not parameterNode.HasParameter(parameter.name):
                values[parameter.name] = parameter.default
                continue
            text = parameterNode.GetParameter(parameter.name)
            if parameter.kind == "bool":
                values[parameter.name] = text == "True"
            elif parameter.kind in ("float", "int"):
                values[parameter.name] = parameter.clamp(_parameter_number(parameter, text))
            elif parameter.control is not None and parameter.control.choices:  # e.g. a whole-number choice
                values[parameter.name] = dict(zip(parameter.choices, parameter.control.choices)).get(text, text)
            else:
                values[parameter.name] = text
        return values

    def optionsFromParameters(self, parameterNode) -> Dict[str, Any]:
        """The volumes and options of :meth:`prepare` held by a parameter node (what the widget's Apply runs)."""
        return {_BY_NAME[name].keyword: value for name, value in self.readParameters(parameterNode).items()}
