"""MedFusionLogic: the MRML side of the Slicer module (no Qt), usable from Slicer and from pytest (slicer-core).

``MedFusionLogic().process(volumeA, volumeB, method=...)`` converts the two volume nodes to SimpleITK images,
runs :func:`MedFusionLib.engine.fuse_volumes`, and adds the fused volume and an edge segmentation to the scene.
``start(...)`` (same options) runs the engine in a worker process instead and returns a job to poll (what the
widget does, so that the GUI never waits and torch never runs in Slicer's process; see fusion_job.py). Both go
through ``prepare`` (checks, MRML -> images, the engine's keyword arguments: every option is declared there, once)
and ``_finish`` (results -> scene, on the caller's thread).

Geometry
    A is the reference. The output has A's IJK-to-RAS matrix (copied, not recomputed) and A's parent transform,
    so it overlays A exactly in every view. B is expressed in A's coordinate frame through the transforms of the
    scene: with T = transform from B's parent to A's parent (``GetTransformBetweenNodes``), a linear T is folded
    into B's IJK-to-RAS (B is then resampled once, by the engine, with its field of view tracked); a non-linear T
    is applied by resampling B onto A's grid with ``vtkImageReslice`` first. The user's nodes are never hardened,
    cloned into the scene or otherwise modified.

Outputs
    Nodes are created only after the engine succeeded. If a later step fails, created nodes are removed and a
    user-selected output node gets its previous content back, so an error or a cancel leaves the scene as it was.

Parameter node
    :data:`PARAMETERS` is the one list of parameter names and types. The widget's ``parameterNodeWrapper`` class
    (MedFusion.py) declares the same names (a test checks it); values are stored the way the wrapper stores them
    (enums by member name, bools as "True"/"False", nodes as references), so a scene saved from one side loads
    on the other.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .errors import InputError
from .functional_colour import AUTO, COLOUR_MODES
from .methods import DEFAULT_METHOD, REGISTRY
from .settings import EDGE_DETAIL_DEFAULT, EDGE_DETAIL_RANGE, FusionSettings  # noqa: F401 (the widget's range)

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


@dataclass
class PreparedFusion:
    """A checked fusion request: the nodes, the inputs as SimpleITK images and the engine's keyword arguments."""
    volumeA: Any
    volumeB: Any
    info: Any  # the method's registry entry
    image_a: Any
    image_b: Any
    settings: Any  # the checked FusionSettings the engine takes (settings.py)
    outputVolume: Any
    outputEdges: Any
    warnings: List[str]
    started: float


def _worker_environment() -> Optional[Dict[str, str]]:
    """Inside Slicer, the environment Slicer started with (what its launcher PythonSlicer expects, as
    slicer.util.launchConsoleProcess uses); elsewhere None (this process's environment)."""
    try:
        import slicer.util

        return dict(slicer.util.startupEnvironment())
    except Exception:  # slicer-core (no application) or no Slicer at all
        return None


class _VolumeState:
    """Everything process() may change on a user-selected output volume, to put it back on failure."""

    def __init__(self, node):
        import vtk

        from .mrml_convert import ijk_to_ras

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
        from .mrml_convert import numpy_to_matrix

        node, scene = self.node, self.node.GetScene()
        node.SetIJKToRASMatrix(numpy_to_matrix(self.matrix))
        node.SetAndObserveImageData(self.image)
        node.SetAndObserveTransformNodeID(self.transform_id)
        for i in reversed(range(node.GetNumberOfDisplayNodes())):
            display = node.GetNthDisplayNode(i)
            if display is not None and display.GetID() not in self.display_ids and scene is not None:
                scene.RemoveNode(display)
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
        for i in reversed(range(node.GetNumberOfDisplayNodes())):
            display = node.GetNthDisplayNode(i)
            if display is not None and display.GetID() not in self.display_ids and scene is not None:
                scene.RemoveNode(display)
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


class MedFusionLogic(_LogicBase):
    """Fuse two volume nodes into a new (or user-selected) volume node, plus an edge segmentation.

    MRML only: no Qt, no dialogs. Errors are :class:`MedFusionLib.errors.InputError` (one sentence for the user)
    or :class:`MedFusionLib.errors.Cancelled`; either way nothing is added to the scene.
    """

    def __init__(self, parent=None):
        _LogicBase.__init__(self)
        self.workerPython: Optional[str] = None  # None: sys.executable (in Slicer: its own Python)
        self.workDirectory: Optional[str] = None  # None: the system's temporary folder

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

    def processParameterNode(self, parameterNode, progress=None, cancel=None) -> MedFusionOutput:
        """Run :meth:`process` with the values of a parameter node."""
        return self.process(progress=progress, cancel=cancel, **self.optionsFromParameters(parameterNode))

    def startParameterNode(self, parameterNode, **jobOptions):
        """Run :meth:`start` with the values of a parameter node (what the widget's Apply does)."""
        return self.start(**jobOptions, **self.optionsFromParameters(parameterNode))

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

        from .mrml_convert import matrix_to_numpy

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

        from .mrml_convert import array_from_image_data, ijk_to_ras, numpy_to_matrix

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
        from .mrml_convert import ijk_to_ras, volume_node_to_sitk

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
        from .mrml_convert import colour_table_of, display_window_preset

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

        from .colour import has_chroma

        if image.GetNumberOfComponentsPerPixel() != 3:
            return False
        return has_chroma(np.nan_to_num(sitk.GetArrayViewFromImage(image)))

    # ---------------------------------------------------------------- the run -------------------------------
    def prepare(self, volumeA, volumeB, method: str = DEFAULT_METHOD, axis: str = "axial", presetA="auto",
                presetB="auto", device: str = "auto", fusionRule: Optional[str] = None,
                edgeStrength: Optional[float] = None, methodOptions: Optional[dict] = None, edges: bool = True,
                outputVolume=None, outputEdges=None, batchSize: Optional[int] = None,
                colourB: Optional[str] = None, colourMode: str = AUTO, edgeDetail: Optional[float] = None,
                checkRegistration: bool = True) -> "PreparedFusion":
        """Check the nodes and options and read the inputs (MRML, main thread); nothing is added to the scene.

        Every option of :meth:`process` and :meth:`start` is declared here, once, and checked here, once, into the
        :class:`~MedFusionLib.settings.FusionSettings` that both the in-process run and the worker pass to the
        engine as they are. ``fusionRule`` and ``edgeStrength`` reach the method only when its registry entry
        declares the options ``rule`` / ``edge_weight`` (MFEnet); ``methodOptions`` are passed as they are.
        ``colourB`` colours a scalar functional B (see the colourB parameter): the fused volume is then RGB,
        its colour shown as ``colourMode`` says (auto, overlay, ycbcr; see functional_colour.py). ``edgeDetail``
        (0..1) asks for fewer or more edges; ``checkRegistration`` first estimates B's shift against A and adds a
        warning (``output.warnings``) beyond max(3 mm, one voxel of B).
        """
        import time

        started = time.perf_counter()
        self._validate(volumeA, volumeB, outputVolume, outputEdges)
        info = REGISTRY.get(method)
        options = method_options_for(info.name, fusionRule, edgeStrength, methodOptions)
        warnings: List[str] = []
        image_a, image_b = self._input_images(volumeA, volumeB, warnings)
        table_b, presetB = self._colour_for_b(volumeB, colourB, presetB)

        colour_a, colour_b = self._is_colour(image_a), self._is_colour(image_b) or table_b is not None
        if outputVolume is not None and not (colour_a and colour_b):
            wants_vector = colour_a or colour_b
            is_vector = outputVolume.IsA("vtkMRMLVectorVolumeNode")
            if wants_vector and not is_vector:
                colour_name = volumeA.GetName() if colour_a else volumeB.GetName()
                raise InputError(f"'{colour_name}' is a colour volume, so the fused volume is RGB; select a vector "
                                 f"volume as output, or none to create one.")
            if is_vector and not wants_vector:
                raise InputError(f"The fused volume is scalar but the output '{outputVolume.GetName()}' is a vector "
                                 f"volume; select a scalar volume as output, or none to create one.")
        settings = FusionSettings.create(
            method=info.name, axis=axis, preset_a=presetA, preset_b=presetB, device=device, batch_size=batchSize,
            edges=edges, method_options=options, name_a=volumeA.GetName(), name_b=volumeB.GetName(),
            colormap_b=table_b, colour_mode=colourMode, edge_detail=edgeDetail, check_registration=checkRegistration)
        return PreparedFusion(volumeA, volumeB, info, image_a, image_b, settings, outputVolume,
                              outputEdges if edges else None, warnings, started)

    def process(self, volumeA, volumeB, progress: Optional[Callable[[int, int], None]] = None,
                cancel: Optional[Callable[[], bool]] = None, **options) -> MedFusionOutput:
        """Fuse ``volumeB`` into ``volumeA``'s geometry in this process, blocking (scripts, tests); see the module
        docstring. ``options`` are those of :meth:`prepare`. ``progress(done, total)`` is called after each batch
        of slices, ``cancel()`` before each; a True from ``cancel`` raises :class:`MedFusionLib.errors.Cancelled`.
        Returns a :class:`MedFusionOutput`.
        """
        prepared = self.prepare(volumeA, volumeB, **options)
        from .engine import fuse  # torch and OpenCV load here, not at import

        result = fuse(prepared.image_a, prepared.image_b, prepared.settings, progress=progress, cancel=cancel)
        return self._finish(prepared, result)

    def start(self, volumeA, volumeB, stallTimeout: Optional[float] = None, **options):
        """Start the same fusion as :meth:`process` in a worker process and return at once.

        Returns a :class:`MedFusionLib.fusion_job.FusionJob`: call ``job.poll()`` (e.g. from a QTimer; it returns
        in milliseconds and is True while the job runs), read ``job.fraction`` / ``job.phase``; the poll that sees
        the worker's result puts it into the scene (on the calling thread) and sets ``job.result`` (a
        :class:`MedFusionOutput`, as :meth:`process` returns). ``job.cancel()`` kills the worker. After a cancel, a
        crash, an out-of-memory kill or a hang (no sign of life for ``stallTimeout`` seconds) ``job.error`` holds
        one sentence and the scene is as it was. ``workerPython`` / ``workDirectory`` (attributes of the logic)
        choose the interpreter (default ``sys.executable``: Slicer's own Python) and the temporary folder's parent.
        """
        from .fusion_job import DEFAULT_STALL_TIMEOUT_S, FusionJob

        prepared = self.prepare(volumeA, volumeB, **options)
        job = FusionJob(prepared.image_a, prepared.image_b, prepared.settings,
                        finish=lambda result: self._finish(prepared, result),
                        python=self.workerPython, env=_worker_environment(), work_dir=self.workDirectory,
                        stall_timeout=DEFAULT_STALL_TIMEOUT_S if stallTimeout is None else stallTimeout)
        prepared.image_a = prepared.image_b = None  # on disk for the worker: Slicer need not hold a copy meanwhile
        return job

    def _finish(self, prepared: "PreparedFusion", result) -> MedFusionOutput:
        """Put an engine result into the scene (main thread); a vanished input or output is an error."""
        import time

        for node, role in ((prepared.volumeA, "volume A"), (prepared.volumeB, "volume B"),
                           (prepared.outputVolume, "the output volume"), (prepared.outputEdges, "the edge output")):
            if node is not None and (node.GetScene() is None or node.GetScene().GetNodeByID(node.GetID()) is not node):
                raise InputError(f"'{node.GetName()}' ({role}) was removed from the scene during the fusion; "
                                 f"nothing was added.")
        output = self._write_outputs(prepared.volumeA, prepared.volumeB, prepared.info, result,
                                     prepared.outputVolume, prepared.outputEdges)
        output.warnings = prepared.warnings + list(result.warnings)
        log.info("MedFusion: %s (%.1f s in total)", result.summary(), time.perf_counter() - prepared.started)
        return output

    # ---------------------------------------------------------------- outputs -------------------------------
    def _write_outputs(self, volumeA, volumeB, info, result, outputVolume, outputEdges) -> MedFusionOutput:
        import slicer

        from .mrml_convert import ijk_to_ras, set_volume_from_sitk

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

        from .mrml_convert import image_data_from_array, ijk_to_ras, numpy_to_matrix

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
