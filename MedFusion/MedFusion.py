"""MedFusion: fuse two co-registered volumes (CT, MR, PET, SPECT) in 3D Slicer.

This file holds only what needs Qt or the running application: the module description, the parameter node
wrapper, the widget (GUI, progress, cancel, dependency installation, slice-view layout) and the self-test entry.
Everything else - the MRML logic included - lives in MedFusionLib and is tested with pytest on slicer-core.
"""
import enum
import logging
from typing import Annotated, Optional

import qt
import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode

# Cheap imports only: no torch, no OpenCV (they load at the first Apply, after the dependency check).
from MedFusionLib import logic as medfusion_logic
from MedFusionLib.errors import Cancelled, MedFusionError
from MedFusionLib.intensity import PRESET_HELP
from MedFusionLib.methods import REGISTRY

PARAMETERS = {p.name: p for p in medfusion_logic.PARAMETERS}


#
# MedFusion
#


class MedFusion(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MedFusion")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Filtering")]
        self.parent.dependencies = []
        self.parent.contributors = ["MedFusion developers"]
        self.parent.helpText = _(
            "Fuse two co-registered volumes (CT + MR, MR + PET/SPECT, MR-T1 + MR-T2) slice by slice into one "
            "volume in the exact geometry of volume A, with edge outlines of both sources. A colour (RGB) PET or "
            "SPECT gives an RGB fused volume. Parent transforms are honoured; inputs are never modified. "
            "Compare the result with the inputs using the Compare slider of the Outputs section (or the "
            "foreground/background fader of the slice views).") + "<p>" + _("Methods:") + "</p>" \
            + medfusion_logic.method_help_html() \
            + '<p><a href="https://github.com/medfusion/SlicerMedFusion#3d-slicer">' + _("Documentation") + "</a></p>"
        self.parent.acknowledgementText = _(
            "MedFusion implements methods from the image-fusion literature; each method's paper is cited above. "
            "The networks were trained on the Harvard Whole Brain Atlas (K. A. Johnson, J. A. Becker). "
            "Built with 3D Slicer, SimpleITK, PyTorch and OpenCV.")


#
# Parameter node (names and defaults come from MedFusionLib.logic.PARAMETERS: one list for logic and widget)
#


class _LabelledEnum(enum.Enum):
    def label(self):
        return _LABELS.get((type(self).__name__, self.name), self.name)


_LABELS = {("FusionMethod", info.name): info.title for info in REGISTRY.infos()}
_LABELS.update({("SlicingAxis", "axial"): _("Axial"), ("SlicingAxis", "coronal"): _("Coronal"),
                ("SlicingAxis", "sagittal"): _("Sagittal"), ("ComputeDevice", "auto"): _("Automatic (GPU if available)"),
                ("ComputeDevice", "cpu"): _("CPU"), ("ComputeDevice", "cuda"): _("GPU (CUDA)")})
FusionMethod = _LabelledEnum("FusionMethod", [(n, n) for n in PARAMETERS["method"].choices])
FusionRule = _LabelledEnum("FusionRule", [(n, n) for n in PARAMETERS["fusionRule"].choices])
SlicingAxis = _LabelledEnum("SlicingAxis", [(n, n) for n in PARAMETERS["axis"].choices])
ComputeDevice = _LabelledEnum("ComputeDevice", [(n, n) for n in PARAMETERS["device"].choices])


@parameterNodeWrapper
class MedFusionParameterNode:
    """The module's state, saved with the scene. Names must match MedFusionLib.logic.PARAMETER_NAMES."""

    inputVolumeA: vtkMRMLScalarVolumeNode  # scalar or vector (vtkMRMLVectorVolumeNode derives from it)
    inputVolumeB: vtkMRMLScalarVolumeNode
    method: FusionMethod = FusionMethod[PARAMETERS["method"].default]
    fusionRule: FusionRule = FusionRule[PARAMETERS["fusionRule"].default]
    edgeStrength: Annotated[float, WithinRange(*medfusion_logic.EDGE_STRENGTH_RANGE)] = PARAMETERS["edgeStrength"].default
    axis: SlicingAxis = SlicingAxis[PARAMETERS["axis"].default]
    presetA: str = PARAMETERS["presetA"].default
    presetB: str = PARAMETERS["presetB"].default
    colourB: str = PARAMETERS["colourB"].default
    device: ComputeDevice = ComputeDevice[PARAMETERS["device"].default]
    showEdges: bool = PARAMETERS["showEdges"].default
    edgeDetail: Annotated[float, WithinRange(*medfusion_logic.EDGE_DETAIL_RANGE)] = PARAMETERS["edgeDetail"].default
    checkRegistration: bool = PARAMETERS["checkRegistration"].default
    outputVolume: vtkMRMLScalarVolumeNode
    outputEdges: vtkMRMLSegmentationNode


#
# MedFusionWidget
#


class MedFusionWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._running = False
        self._cancelRequested = False
        self._dependenciesChecked = False
        self._lastOutput = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MedFusion.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = MedFusionLogic()

        self.ui.presetALineEdit.toolTip = _("Intensity preset of volume A: ") + PRESET_HELP
        self.ui.presetBLineEdit.toolTip = _("Intensity preset of volume B: ") + PRESET_HELP
        self.ui.colourBLineEdit.toolTip = _(
            "Colour a scalar functional volume B (PET in SUV, SPECT): 'none' keeps grey; 'volume' uses B's own "
            "colour table and displayed window; or type a colour node name such as PET-Heat. The fused volume is "
            "then RGB: its brightness carries the anatomy of A, its colour the function of B.")
        self.ui.progressBar.hide()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.compareInputComboBox.connect("currentIndexChanged(int)", self.onCompareChanged)
        self.ui.compareOpacitySliderWidget.connect("valueChanged(double)", self.onCompareChanged)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self._cancelRequested = True
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGUI)

    def onSceneStartClose(self, caller, event) -> None:
        self._cancelRequested = True  # a running fusion stops before its next batch
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolumeA:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first and not first.IsA("vtkMRMLLabelMapVolumeNode"):
                self._parameterNode.inputVolumeA = first

    def setParameterNode(self, inputParameterNode: Optional[MedFusionParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGUI)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Widgets with the dynamic property SlicerParameterName (see the .ui) bind to the parameters here.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self._setMethodItemToolTips()
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGUI)
            self._updateGUI()

    def _setMethodItemToolTips(self) -> None:
        """Each method of the combo box names its paper in a tooltip (items are filled by connectGui)."""
        for index in range(self.ui.methodComboBox.count):
            method = list(FusionMethod)[index]
            info = REGISTRY.get(method.name)
            self.ui.methodComboBox.setItemData(index, f"{info.summary}\n{info.reference}", qt.Qt.ToolTipRole)

    def _updateGUI(self, caller=None, event=None) -> None:
        """Apply/Cancel state and the method-dependent widgets (rule and strength only where the method has them)."""
        node = self._parameterNode
        if node is None:
            return
        method = node.method.name
        info = REGISTRY.get(method)
        self.ui.methodComboBox.toolTip = f"{info.title}: {info.summary}\n{info.reference}"
        self.ui.methodInfoLabel.text = f"{info.summary} <i>{info.reference}</i>"
        hasRule = medfusion_logic.method_accepts(method, medfusion_logic.RULE_OPTION)
        hasStrength = medfusion_logic.method_accepts(method, medfusion_logic.EDGE_WEIGHT_OPTION)
        self.ui.fusionRuleComboBox.enabled = hasRule and not self._running
        self.ui.edgeStrengthSliderWidget.enabled = hasStrength and not self._running
        unavailable = _("Not an option of {method}.").format(method=info.title)
        self.ui.fusionRuleComboBox.toolTip = _("How the network merges the features of the two sources.") \
            if hasRule else unavailable
        self.ui.edgeStrengthSliderWidget.toolTip = _("Weight of the Canny edges added to the fused image (0 = off).") \
            if hasStrength else unavailable
        self.ui.outputEdgesSelector.enabled = node.showEdges and not self._running
        self.ui.edgeDetailSliderWidget.enabled = node.showEdges and not self._running
        if self._running:
            self.ui.applyButton.text = _("Cancel")
            self.ui.applyButton.toolTip = _("Stop the fusion before its next batch of slices; nothing is added.")
            self.ui.applyButton.enabled = True
        else:
            self.ui.applyButton.text = _("Apply")
            ready = node.inputVolumeA and node.inputVolumeB and node.inputVolumeA != node.inputVolumeB
            self.ui.applyButton.enabled = bool(ready)
            self.ui.applyButton.toolTip = _("Fuse volume B into the geometry of volume A.") if ready \
                else _("Select two different input volumes.")
        for section in (self.ui.inputsCollapsibleButton, self.ui.methodCollapsibleButton,
                        self.ui.advancedCollapsibleButton):
            section.enabled = not self._running
        self.ui.outputVolumeSelector.enabled = not self._running

    # ------------------------------------------------------------------ dependencies --------------------------
    def _ensureDependencies(self) -> bool:
        """torch through the PyTorch extension (it picks the CUDA build); OpenCV and PyWavelets with pip."""
        if self._dependenciesChecked:
            return True
        try:
            import PyTorchUtils
        except ModuleNotFoundError:
            slicer.util.errorDisplay(_("MedFusion needs the PyTorch extension. Install 'PyTorch' from the "
                                       "Extensions Manager, restart Slicer, then click Apply again."))
            return False
        torchLogic = PyTorchUtils.PyTorchUtilsLogic()
        if not torchLogic.torchInstalled():
            torch = torchLogic.installTorch(askConfirmation=True)
            if torch is None:
                slicer.util.errorDisplay(_("MedFusion needs PyTorch. Install it when asked, or with the "
                                           "'PyTorch Utils' module, then click Apply again."))
                return False
        requirements = self.resourcePath("requirements.txt")
        try:
            import slicer.packaging as packaging  # Slicer >= 5.11
        except ImportError:
            packaging = None
        try:
            if packaging is not None and hasattr(packaging, "pip_ensure"):
                # Checks, asks, installs with progress, offers a restart when needed; raises if declined.
                packaging.pip_ensure(packaging.load_requirements(requirements), requester="MedFusion")
            else:
                missing = self._missingRequirements(requirements)
                if missing:
                    if not slicer.util.confirmOkCancelDisplay(
                            _("MedFusion needs these Python packages: {packages}. Install them now?").format(
                                packages=", ".join(missing)), _("MedFusion dependencies")):
                        return False
                    with slicer.util.WaitCursor():
                        slicer.util.pip_install(" ".join(missing))
        except RuntimeError:  # pip_ensure: the user declined the installation
            slicer.util.errorDisplay(_("MedFusion cannot run without OpenCV and PyWavelets."))
            return False
        except Exception as error:  # e.g. pip failed (offline machine)
            logging.exception("MedFusion: installing Python packages failed")
            slicer.util.errorDisplay(_("Installing MedFusion's Python packages failed: {error}").format(error=error))
            return False
        self._dependenciesChecked = True
        return True

    @staticmethod
    def _missingRequirements(path):
        import importlib.metadata
        import re

        missing = []
        with open(path) as f:
            for line in f:
                line = line.split("#", 1)[0].strip()
                if not line or line.startswith("-"):
                    continue
                name = re.split(r"[<>=!~;\[ ]", line, 1)[0]
                try:
                    importlib.metadata.version(name)
                except importlib.metadata.PackageNotFoundError:
                    missing.append(line)
        return missing

    # ------------------------------------------------------------------ Apply / Cancel ------------------------
    def onApplyButton(self) -> None:
        if self._running:
            self._cancelRequested = True
            self.ui.applyButton.enabled = False
            self.ui.statusLabel.text = _("Cancelling...")
            return
        if not self._ensureDependencies():
            return
        self._running = True
        self._cancelRequested = False
        self.ui.progressBar.value = 0
        self.ui.progressBar.show()
        self.ui.statusLabel.text = _("Fusing...")
        self._updateGUI()
        output = None
        try:  # no wait cursor: the Cancel button stays clickable, the progress bar shows that work goes on
            output = self.logic.processParameterNode(
                self._parameterNode.parameterNode, progress=self._onProgress, cancel=self._isCancelRequested)
        except Cancelled:
            self.ui.statusLabel.text = _("Cancelled: nothing was added to the scene.")
        except MedFusionError as error:
            self.ui.statusLabel.text = _("Failed.")
            slicer.util.errorDisplay(str(error))
        except Exception as error:
            logging.exception("MedFusion failed")
            self.ui.statusLabel.text = _("Failed.")
            slicer.util.errorDisplay(_("Fusion failed: {error}").format(error=error),
                                     detailedText=_("See the Python console for details."))
        finally:
            self._running = False
            self.ui.progressBar.hide()
            self._updateGUI()
        if output is not None:
            self._lastOutput = output
            self.ui.statusLabel.text = output.summary()
            for warning in output.warnings:
                logging.warning(warning)
            if output.warnings:
                self.ui.statusLabel.text += "\n" + "\n".join(output.warnings)
            self.showResult(output)

    def _onProgress(self, done: int, total: int) -> None:
        self.ui.progressBar.maximum = max(total, 1)
        self.ui.progressBar.value = done
        slicer.app.processEvents()  # repaint, and see a click on Cancel (MRML stays on this thread)

    def _isCancelRequested(self) -> bool:
        slicer.app.processEvents()
        return self._cancelRequested

    # ------------------------------------------------------------------ display and comparison ---------------
    def showResult(self, output) -> None:
        """Fused volume as background, edges as outlines, input A as a transparent foreground to fade in."""
        self.ui.compareInputComboBox.currentIndex = 0
        self.ui.compareOpacitySliderWidget.value = 0.0
        slicer.util.setSliceViewerLayers(background=output.volume, foreground=self._parameterNode.inputVolumeA,
                                         foregroundOpacity=0.0, fit=True)
        if output.edges is not None:
            output.edges.SetDisplayVisibility(True)

    def onCompareChanged(self, *args) -> None:
        """Fade the chosen input over the fused volume (0 = fused only, 1 = input only)."""
        node = self._parameterNode
        if node is None or self._lastOutput is None:
            return
        chosen = node.inputVolumeA if self.ui.compareInputComboBox.currentIndex == 0 else node.inputVolumeB
        slicer.util.setSliceViewerLayers(foreground=chosen, foregroundOpacity=self.ui.compareOpacitySliderWidget.value)


#
# MedFusionLogic
#


class MedFusionLogic(medfusion_logic.MedFusionLogic):
    """The MRML logic of MedFusionLib; here it only hands the widget a typed parameter node."""

    def getParameterNode(self):
        node = super().getParameterNode()
        self.setDefaultParameters(node)
        return MedFusionParameterNode(node)


#
# MedFusionTest
#


class MedFusionTest(ScriptedLoadableModuleTest):
    """Offline self-test: the built-in phantom, fused with a classic method and with MFEnet (when registered)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_ParameterNames()
        self.setUp()
        self.test_FusePhantom()

    def test_ParameterNames(self):
        self.assertEqual(list(MedFusionParameterNode.allParameters), list(medfusion_logic.PARAMETER_NAMES))

    def test_FusePhantom(self):
        from MedFusionLib.selftest import run_self_test

        self.delayDisplay(_("Fusing the built-in phantom (CT + MR)"))
        outcome = run_self_test(slicer.mrmlScene, log=logging.info)
        for method, status in outcome.items():
            if status.startswith("skipped"):
                logging.warning(f"MedFusionTest: {method} {status}")
        self.assertIn("passed", outcome.values())
        self.delayDisplay(_("Test passed"))
