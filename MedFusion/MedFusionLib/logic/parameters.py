"""The parameter node: the one list of parameter names and types (PARAMETERS), their serialisation, and the
mapping of the widget's camelCase names to the engine's settings. camelCase lives here, at the widget boundary
(Slicer's convention for parameter nodes); the rest of MedFusionLib is snake_case.

:data:`PARAMETERS` is the one list of parameter names and types. The widget's ``parameterNodeWrapper`` class
(MedFusion.py) declares the same names (a test checks it); values are stored the way the wrapper stores them
(enums by member name, bools as "True"/"False", nodes as references), so a scene saved from one side loads
on the other.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..errors import InputError
from ..functional_colour import AUTO, COLOUR_MODES
from ..methods import DEFAULT_METHOD, REGISTRY
from ..settings import EDGE_DETAIL_DEFAULT

log = logging.getLogger(__name__)

MODULE_NAME = "MedFusion"
AXES = ("axial", "coronal", "sagittal")
DEVICES = ("auto", "cpu", "cuda")
RULE_OPTION = "rule"
EDGE_WEIGHT_OPTION = "edge_weight"
EDGE_STRENGTH_RANGE = (0.0, 2.0)
SCALAR_WINDOW_LEVEL = (1.0, 0.5)  # the fused scalar volume is float32 in [0, 1]
RGB_WINDOW_LEVEL = (255.0, 127.5)  # the fused RGB volume is uint8 0..255
# Segment colours of the edge overlay (RGB 0..1): A amber, B cyan; label 3 (both) belongs to both segments.
EDGE_COLOURS = ((1.0, 0.75, 0.0), (0.0, 0.85, 1.0))
EDGE_SEGMENT_IDS = ("MedFusionEdgesA", "MedFusionEdgesB")
# Colouring of a scalar functional B: none, its own display colour table, or a colour node by name.
COLOUR_NONE, COLOUR_OWN = "none", "volume"


def _declared_option(option: str):
    """The first registry declaration of ``option`` (e.g. MFEnet's 'rule'): the widget's default and choices."""
    return next(info.options[option] for info in REGISTRY.infos() if option in info.options)


FUSION_RULES = _declared_option(RULE_OPTION).choices  # MFEnet's feature-fusion rules


@dataclass(frozen=True)
class Parameter:
    """One entry of the parameter node. ``kind``: node, enum, str, bool or float."""
    name: str
    kind: str
    default: Any = None
    node_class: Optional[str] = None  # for kind "node"
    choices: Tuple[str, ...] = ()  # for kind "enum"
    help: str = ""
    limits: Optional[Tuple[float, float]] = None  # for kind "float": the slider's range

    def clamp(self, value: float) -> float:
        """A number as the widget shows it: a slider cannot show (nor should the run use) a value outside it."""
        return float(min(max(value, self.limits[0]), self.limits[1])) if self.limits else float(value)


PARAMETERS: Tuple[Parameter, ...] = (
    Parameter("inputVolumeA", "node", None, node_class="vtkMRMLScalarVolumeNode",
              help="reference volume (its grid and geometry are the output's)"),
    Parameter("inputVolumeB", "node", None, node_class="vtkMRMLScalarVolumeNode",
              help="second volume, resampled onto A"),
    Parameter("method", "enum", DEFAULT_METHOD, choices=tuple(REGISTRY.names()), help="fusion method"),
    Parameter("fusionRule", "enum", _declared_option(RULE_OPTION).default, choices=FUSION_RULES,
              help="feature fusion rule (methods with a 'rule' option, e.g. MFEnet)"),
    Parameter("edgeStrength", "float", _declared_option(EDGE_WEIGHT_OPTION).default,
              help="edge-enhancement weight (methods with an 'edge_weight' option, e.g. MFEnet)",
              limits=EDGE_STRENGTH_RANGE),
    Parameter("axis", "enum", "axial", choices=AXES, help="slicing axis"),
    Parameter("presetA", "str", "auto", help="intensity preset of A"),
    Parameter("presetB", "str", "auto", help="intensity preset of B"),
    Parameter("colourB", "str", COLOUR_NONE,
              help="colour a scalar functional B (PET, SPECT): none, 'volume' (its own colour table and window), "
                   "or the name of a colour node (e.g. PET-Heat); the fused volume is then RGB"),
    Parameter("colourMode", "enum", AUTO, choices=COLOUR_MODES,
              help="how the functional colour is shown: auto, overlay (thresholded colour on the grey fusion) or "
                   "ycbcr (brightness from the fusion, colour kept); see MedFusionLib.functional_colour"),
    Parameter("device", "enum", "auto", choices=DEVICES, help="auto, cpu or cuda"),
    Parameter("showEdges", "bool", True, help="compute the edge overlay segmentation"),
    Parameter("edgeDetail", "float", EDGE_DETAIL_DEFAULT, help="fewer (0) or more (1) edges in the overlay"),
    Parameter("checkRegistration", "bool", True, help="warn when B seems shifted from A (registration check)"),
    Parameter("outputVolume", "node", None, node_class="vtkMRMLScalarVolumeNode",
              help="fused volume to overwrite; empty = create a new one"),
    Parameter("outputEdges", "node", None, node_class="vtkMRMLSegmentationNode",
              help="edge segmentation to overwrite; empty = create a new one"),
)
PARAMETER_NAMES: Tuple[str, ...] = tuple(p.name for p in PARAMETERS)
_BY_NAME = {p.name: p for p in PARAMETERS}


def method_accepts(method: str, option: str) -> bool:
    """Whether the registry entry of ``method`` declares ``option`` (e.g. MFEnet's 'rule', 'edge_weight')."""
    try:
        return option in REGISTRY.get(method).options
    except InputError:
        return False


def method_options_for(method: str, fusionRule=None, edgeStrength=None, extra: Optional[dict] = None) -> dict:
    """Method options to pass to the engine: the rule and edge strength only where the method declares them."""
    options = dict(extra or {})
    if fusionRule is not None and method_accepts(method, RULE_OPTION):  # checked with the others by the engine
        options.setdefault(RULE_OPTION, fusionRule)
    if edgeStrength is not None and method_accepts(method, EDGE_WEIGHT_OPTION):
        options.setdefault(EDGE_WEIGHT_OPTION, float(edgeStrength))
    return options


def _parameter_float(name: str, text) -> float:
    """A number for or from a parameter node (a saved scene can hold anything): finite, or one sentence."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = float("nan")
    if not np.isfinite(value):
        raise InputError(f"The MedFusion parameter {name} = '{text}' is not a finite number; set it again in the "
                         f"module.")
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
        elif parameter.kind == "float":
            node.SetParameter(parameter.name, str(parameter.clamp(_parameter_float(parameter.name, value))))
        else:
            node.SetParameter(parameter.name, str(value))

    def setDefaultParameters(self, parameterNode) -> None:
        """Write the default of every parameter the node lacks (as the wrapper does) or holds an unusable value
        of: an enum value no longer offered (a scene saved with a method this version does not have) or a
        number that does not parse. The widget's typed wrapper could not read those back."""
        wasModified = parameterNode.StartModify()
        try:
            for parameter in PARAMETERS:
                if not parameterNode.HasParameter(parameter.name):
                    self._write(parameterNode, parameter, parameter.default)
                    continue
                text = parameterNode.GetParameter(parameter.name)
                usable = True
                if parameter.kind == "enum":
                    usable = text in parameter.choices
                elif parameter.kind == "float":
                    try:
                        number = float(text)
                        usable = bool(np.isfinite(number))
                    except ValueError:
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
        unknown = sorted(set(values) - set(PARAMETER_NAMES))
        if unknown:
            raise InputError(f"Unknown MedFusion parameter(s): {', '.join(unknown)}.")
        wasModified = parameterNode.StartModify()
        try:
            for name, value in values.items():
                self._write(parameterNode, _BY_NAME[name], value)
        finally:
            parameterNode.EndModify(wasModified)

    def readParameters(self, parameterNode) -> Dict[str, Any]:
        """Every parameter's value (defaults where missing), typed: nodes, str, bool, float."""
        values = {}
        for parameter in PARAMETERS:
            if parameter.kind == "node":
                values[parameter.name] = parameterNode.GetNodeReference(parameter.name)
                continue
            if not parameterNode.HasParameter(parameter.name):
                values[parameter.name] = parameter.default
                continue
            text = parameterNode.GetParameter(parameter.name)
            if parameter.kind == "bool":
                values[parameter.name] = text == "True"
            elif parameter.kind == "float":
                values[parameter.name] = parameter.clamp(_parameter_float(parameter.name, text))
            else:
                values[parameter.name] = text
        return values

    def optionsFromParameters(self, parameterNode) -> Dict[str, Any]:
        """The volumes and options of :meth:`prepare` held by a parameter node (what the widget's Apply runs)."""
        p = self.readParameters(parameterNode)
        return dict(volumeA=p["inputVolumeA"], volumeB=p["inputVolumeB"], method=p["method"], axis=p["axis"],
                    presetA=p["presetA"], presetB=p["presetB"], device=p["device"], fusionRule=p["fusionRule"],
                    edgeStrength=p["edgeStrength"], edges=p["showEdges"], outputVolume=p["outputVolume"],
                    outputEdges=p["outputEdges"], colourB=p["colourB"],
                    colourMode=p["colourMode"], edgeDetail=p["edgeDetail"],
                    checkRegistration=p["checkRegistration"])
