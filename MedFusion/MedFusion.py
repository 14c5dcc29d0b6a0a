"""MedFusion: fuse two co-registered volumes (CT, MR, PET, SPECT) in 3D Slicer.

This file holds only what needs Qt or the running application: the module description, the parameter node
wrapper, the widget (GUI, progress, cancel, dependency installation, slice-view layout) and the self-test entry.
Everything else - the MRML logic included - lives in MedFusionLib and is tested with pytest on slicer-core.
"""
import enum
import logging
from typing import Annotated, Optional

import ctk
import qt
import vtk

import slicer

try:
    from slicer.i18n import tr as _
    from slicer.i18n import translate
    from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
except ImportError as error:  # Slicer 5.0-5.2: say why in the log instead of a bare import error
    raise ImportError("MedFusion needs 3D Slicer 5.4 or later (slicer.i18n and slicer.parameterNodeWrapper are "
                      "missing).") from error
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode

# Cheap imports only: no torch, no OpenCV (they load at the first Apply, after the dependency check).
from MedFusionLib import logic as medfusion_logic
from MedFusionLib import slicer_setup
from MedFusionLib.errors import MedFusionError
from MedFusionLib.fusion_job import CANCELLED, DONE
from MedFusionLib.intensity import PRESET_HELP
from MedFusionLib.methods import REGISTRY
from MedFusionLib.methods.families import combo_entries

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
        self.parent.contributors = ["MedFusion maintainers (SlicerMedFusion project)"]
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
ColourMode = _LabelledEnum("ColourMode", [(n, n) for n in PARAMETERS["colourMode"].choices])


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
    colourMode: ColourMode = ColourMode[PARAMETERS["colourMode"].default]
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
    """Thin GUI over MedFusionLogic: Apply starts a worker job, a QTimer polls it, Cancel kills it."""

    POLL_INTERVAL_MS = 200  # each poll reads a few lines (well under a millisecond); results arrive in the poll

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None  # the running FusionJob, if any
        self._pollTimer = None
        self._dependenciesChecked = False
        self._resultVolumeID = None  # the last fused volume (its ID only: the scene holds the data, once)
        self._optionControls = {}  # parameter name -> (label, widget, ControlSpec): _buildOptionControls

    @property
    def _running(self) -> bool:
        return self._job is not None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MedFusion.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        self._uiWidget = uiWidget
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = MedFusionLogic()

        self.ui.presetALineEdit.toolTip = _("Intensity preset of volume A: ") + PRESET_HELP
        self.ui.presetBLineEdit.toolTip = _("Intensity preset of volume B: ") + PRESET_HELP
        self.ui.colourBLineEdit.toolTip = _(
            "Colour a scalar functional volume B (PET in SUV, SPECT): 'none' keeps grey; 'volume' uses B's own "
            "colour table and displayed window; or type a colour node name such as PET-Heat. The fused volume is "
            "then RGB: its brightness carries the anatomy of A, its colour the function of B.")
        self.ui.progressBar.hide()
        self.ui.progressBar.maximum = 100
        self._buildOptionControls()

        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(self.POLL_INTERVAL_MS)
        self._pollTimer.connect("timeout()", self._onPollTimer)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.compareInputComboBox.connect("currentIndexChanged(int)", self.onCompareChanged)
        self.ui.compareOpacitySliderWidget.connect("valueChanged(double)", self.onCompareChanged)
        self._fillMethodComboBox()
        self.ui.methodComboBox.connect("currentIndexChanged(int)", self._onMethodChosen)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self._stopJob()
        self.setParameterNode(None)
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        # A running fusion goes on (its timer keeps polling); only the GUI bindings are released.
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        if self._running:
            self._stopJob()
            self.ui.statusLabel.text = _("Cancelled: the scene was closed.")
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
        if self._parameterNode is not None and inputParameterNode is not None \
                and self._parameterNode.parameterNode is inputParameterNode.parameterNode \
                and self._parameterNodeGuiTag is not None:
            return  # already bound to this node: binding twice would stack connectors
        if self._parameterNode:
            if self._parameterNodeGuiTag is not None:
                self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGUI)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectParametersToGui(self._boundWidgets())
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGUI)
            self._updateGUI()

    def _boundWidgets(self) -> dict:
        """Parameter name -> widget, from the dynamic property SlicerParameterName of the .ui.

        Bound through connectParametersToGui, which returns a tag on every supported Slicer (connectGui returns
        none before 5.10, so its connectors could never be removed: on 5.4-5.8 each re-entry stacked another set,
        whose reaction to the combo boxes being refilled reset Method, Rule, Axis and Device to their first item).
        """
        widgets = {}
        for widget in self._uiWidget.findChildren(qt.QWidget):
            name = widget.property("SlicerParameterName")
            if name:
                widgets[str(name)] = widget
        missing = set(medfusion_logic.PARAMETER_NAMES) - set(widgets)
        if missing:
            logging.error("MedFusion: no widget for parameter(s) %s", ", ".join(sorted(missing)))
        # The method combo box is grouped by family (title rows, separators) and synced by hand: Slicer's enum
        # connector maps row i to the enum's i-th member, so it would refill the box and lose the grouping.
        widgets.pop("method", None)
        return widgets

    def _fillMethodComboBox(self) -> None:
        """The methods by family (methods/families.py): a disabled title row per family, separators between
        families; each method row holds its registry name as item data and names its paper in a tooltip."""
        combo = self.ui.methodComboBox
        combo.blockSignals(True)
        combo.clear()
        for row in combo_entries(REGISTRY):
            if row.kind == "separator":
                combo.insertSeparator(combo.count)
                continue
            combo.addItem(row.text, row.method)
            index = combo.count - 1
            if row.kind == "title":
                # QComboBox's default model is a QStandardItemModel (Qt docs, QComboBox::setModel): a disabled
                # item is shown greyed and cannot be chosen, with the mouse or the keyboard
                item = combo.model().item(index)
                item.setEnabled(False)
                font = item.font()
                font.setBold(True)
                item.setFont(font)
            else:
                info = REGISTRY.get(row.method)
                combo.setItemData(index, f"{info.summary}\n{info.reference}", qt.Qt.ToolTipRole)
        combo.blockSignals(False)

    def _onMethodChosen(self, index: int) -> None:
        name = self.ui.methodComboBox.itemData(index)
        if self._parameterNode is not None and name and name != self._parameterNode.method.name:
            self._parameterNode.method = FusionMethod[name]

    def _showMethod(self, name: str) -> None:
        """Select ``name``'s row without echoing the change back to the parameter node."""
        combo = self.ui.methodComboBox
        index = combo.findData(name)
        if index >= 0 and index != combo.currentIndex:
            combo.blockSignals(True)
            combo.currentIndex = index
            combo.blockSignals(False)

    # ------------------------------------------------------------------ method options ----------------------
    def _buildOptionControls(self) -> None:
        """A control for every method option, as logic/controls.py specifies it from the registry: MFEnet's rule
        and edge weight are the .ui's (bound by the wrapper), the others are made here and bound below."""
        self._optionControls = {}  # parameter name -> (label, widget, ControlSpec)
        legacy = {"fusionRule": (self.ui.fusionRuleComboBoxLabel, self.ui.fusionRuleComboBox),
                  "edgeStrength": (self.ui.edgeStrengthSliderWidgetLabel, self.ui.edgeStrengthSliderWidget)}
        for name, (label, widget) in legacy.items():
            spec = PARAMETERS[name].control
            widget.toolTip = spec.tooltip
            if spec.kind == "slider":
                widget.singleStep, widget.decimals = spec.step, spec.decimals
                widget.minimum, widget.maximum = spec.minimum, spec.maximum
            self._optionControls[name] = (label, widget, spec)
        form = self.ui.methodCollapsibleButton.layout()
        for parameter in medfusion_logic.OPTION_PARAMETERS:
            spec = parameter.control
            widget, signal = self._makeOptionWidget(spec)
            widget.toolTip = spec.tooltip
            widget.connect(signal, lambda *args, name=parameter.name: self._onOptionChanged(name))
            label = qt.QLabel(spec.label + ":")
            form.addRow(label, widget)
            self._optionControls[parameter.name] = (label, widget, spec)

    @staticmethod
    def _makeOptionWidget(spec):
        """(widget, its change signal) for a control spec."""
        if spec.kind == "combo":
            widget = qt.QComboBox()
            widget.addItems([str(choice) for choice in spec.choices])
            return widget, "currentIndexChanged(int)"
        if spec.kind == "checkbox":
            return qt.QCheckBox(), "toggled(bool)"
        if spec.kind == "line edit":
            return qt.QLineEdit(), "editingFinished()"
        if spec.kind == "slider":
            widget = ctk.ctkSliderWidget()
        else:
            widget = qt.QDoubleSpinBox() if spec.decimals else qt.QSpinBox()
        if spec.decimals:
            widget.decimals = spec.decimals
        widget.minimum, widget.maximum, widget.singleStep = spec.minimum, spec.maximum, spec.step
        return widget, "valueChanged(double)" if spec.decimals else "valueChanged(int)"

    @staticmethod
    def _optionWidgetValue(widget, spec):
        if spec.kind == "combo":
            return widget.currentText
        if spec.kind == "checkbox":
            return widget.checked
        if spec.kind == "line edit":
            return widget.text
        return widget.value

    @staticmethod
    def _showOptionValue(widget, spec, value) -> None:
        wasBlocked = widget.blockSignals(True)  # showing a value is no change to write back
        try:
            if spec.kind == "combo":
                widget.currentIndex = max(widget.findText(str(value)), 0)
            elif spec.kind == "checkbox":
                widget.checked = bool(value)
            elif spec.kind == "line edit":
                widget.text = str(value)
            else:
                widget.value = value
        finally:
            widget.blockSignals(wasBlocked)

    def _onOptionChanged(self, name: str) -> None:
        if self._parameterNode is None:
            return
        _, widget, spec = self._optionControls[name]
        try:
            self.logic.setParameters(self._parameterNode.parameterNode, **{name: self._optionWidgetValue(widget, spec)})
        except MedFusionError as error:  # a value the node refuses: it keeps its own, which the control shows again
            logging.warning(str(error))
            self._updateGUI()

    def _updateOptionControls(self, method: str) -> None:
        """Only the options the method declares are shown; the made controls show the node's values."""
        try:
            values = self.logic.readParameters(self._parameterNode.parameterNode)
        except MedFusionError as error:  # e.g. a number a script wrote garbled: Apply says so in a dialog
            logging.warning(str(error))
            values = {}
        for name, (label, widget, spec) in self._optionControls.items():
            shown = method in spec.methods
            label.visible = widget.visible = shown
            widget.enabled = shown and not self._running
            if name in PARAMETERS or name not in values:  # the wrapper shows MFEnet's two
                continue
            self._showOptionValue(widget, spec, values[name])

    def _updateGUI(self, caller=None, event=None) -> None:
        """Apply/Cancel state and the method-dependent widgets (each option's control only for its methods)."""
        node = self._parameterNode
        if node is None:
            return
        method = node.method.name
        info = REGISTRY.get(method)
        self._showMethod(method)
        self.ui.methodComboBox.toolTip = f"{info.title}: {info.summary}\n{info.reference}"
        self.ui.methodInfoLabel.text = f"{info.summary} <i>{info.reference}</i>"
        self._updateOptionControls(info.name)
        self.ui.outputEdgesSelector.enabled = node.showEdges and not self._running
        self.ui.edgeDetailSliderWidget.enabled = node.showEdges and not self._running
        if self._running:
            self.ui.applyButton.text = _("Cancel")
            self.ui.applyButton.toolTip = _("Stop the fusion now; nothing is added to the scene.")
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
        """torch through the PyTorch extension, OpenCV and PyWavelets with pip; any failure is one dialog."""
        if self._dependenciesChecked:
            return True
        try:
            self._dependenciesChecked = self._installTorch() and self._installPackages()
        except Exception as error:  # PyTorchUtils or pip failed: offline, proxy, disk full, ...
            logging.exception("MedFusion: installing its Python packages failed")
            slicer.util.errorDisplay(
                _("MedFusion could not install its Python packages ({error}); check the network connection, or "
                  "install them offline as the README describes, then click Apply again.").format(
                    error=type(error).__name__), detailedText=str(error))
            return False
        return self._dependenciesChecked

    def _installTorch(self) -> bool:
        problems = slicer_setup.check([slicer_setup.torch_requirement()])  # finds torch without importing it
        if not problems:
            return True
        if problems[0].installed is not None:
            slicer.util.errorDisplay(_(
                "MedFusion needs PyTorch {minimum} or later but {found} is installed; uninstall it in the PyTorch "
                "Utils module, restart Slicer and click Apply again.").format(
                    minimum=slicer_setup.TORCH_MINIMUM, found=problems[0].installed))
            return False
        try:
            import PyTorchUtils
        except ModuleNotFoundError:
            slicer.util.errorDisplay(_("MedFusion needs the PyTorch extension: install 'PyTorch' from the "
                                       "Extensions Manager, restart Slicer, then click Apply again."))
            return False
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
            askConfirmation=True, torchVersionRequirement=f">={slicer_setup.TORCH_MINIMUM}")
        if torch is None:
            slicer.util.errorDisplay(_("MedFusion needs PyTorch: install it when asked, or with the "
                                       "'PyTorch Utils' module, then click Apply again."))
            return False
        return True

    def _installPackages(self) -> bool:
        import os
        import shlex
        import tempfile

        import numpy

        requirements = slicer_setup.load_requirements(self.resourcePath("requirements.txt"))
        problems = slicer_setup.check(requirements)
        if not problems:
            return True
        descriptions = ", ".join(p.describe() for p in problems)
        handle, constraints = tempfile.mkstemp(prefix="MedFusion-constraints-", suffix=".txt")
        with os.fdopen(handle, "w") as f:
            f.write(slicer_setup.numpy_constraint(numpy.__version__))  # Slicer's numpy stays as it is
        try:
            try:
                import slicer.packaging as packaging  # Slicer >= 5.12
            except ImportError:
                packaging = None
            specs = [p.requirement.pip_spec(numpy.__version__) for p in problems]
            if packaging is not None and hasattr(packaging, "pip_ensure"):
                try:  # checks, asks, installs with progress, offers a restart when needed; raises if declined
                    try:
                        packaging.pip_ensure(specs, requester="MedFusion", constraints=constraints)
                    except TypeError:  # a pip_ensure without constraints: pin numpy as a requirement instead
                        packaging.pip_ensure(specs + [f"numpy=={numpy.__version__}"], requester="MedFusion")
                except RuntimeError:
                    slicer.util.errorDisplay(_("MedFusion cannot run without {packages}.").format(
                        packages=descriptions))
                    return False
            else:
                if not slicer.util.confirmOkCancelDisplay(
                        _("MedFusion needs these Python packages: {packages}. Install them now?").format(
                            packages=descriptions), _("MedFusion dependencies")):
                    return False
                arguments = slicer_setup.pip_arguments(problems, numpy.__version__, constraints)
                with slicer.util.WaitCursor():  # one quoted string: what pip_install accepts on every version
                    slicer.util.pip_install(" ".join(shlex.quote(a) for a in arguments))
        finally:
            os.remove(constraints)
        still = slicer_setup.check(requirements)
        if still:
            slicer.util.errorDisplay(_("MedFusion installed {packages} but cannot import them yet; restart Slicer "
                                       "and click Apply again.").format(
                packages=", ".join(p.requirement.pip_name for p in still)))
            return False
        return True

    # ------------------------------------------------------------------ Apply / Cancel ------------------------
    def onApplyButton(self) -> None:
        if self._running:
            self._stopJob()
            self.ui.statusLabel.text = _("Cancelled: nothing was added to the scene.")
            return
        if not self._ensureDependencies():
            return
        try:
            self._job = self.logic.startParameterNode(self._parameterNode.parameterNode)
        except MedFusionError as error:  # bad input, found before any work
            self.ui.statusLabel.text = _("Failed.")
            slicer.util.errorDisplay(str(error))
            return
        except Exception as error:
            logging.exception("MedFusion could not start")
            slicer.util.errorDisplay(_("MedFusion could not start the fusion ({error}).").format(error=error),
                                     detailedText=_("See the Python console for details."))
            return
        self.ui.progressBar.value = 0
        self.ui.progressBar.show()
        self.ui.statusLabel.text = self._job.phase
        self._updateGUI()
        self._pollTimer.start()

    def _onPollTimer(self) -> None:
        job = self._job
        if job is None:
            self._pollTimer.stop()
            return
        try:
            running = job.poll()  # quick; the poll that sees the result adds it to the scene (this thread)
        except Exception as error:  # a bug: stop the job rather than repeat the failure at every tick
            logging.exception("MedFusion: polling the fusion process failed")
            job.cancel()
            self._onJobEnded(job)
            slicer.util.errorDisplay(_("The fusion stopped because of an internal error ({error}); nothing was "
                                       "added to the scene.").format(error=type(error).__name__))
            return
        self.ui.progressBar.value = int(round(100 * job.fraction))
        self.ui.statusLabel.text = job.phase
        if not running:
            self._onJobEnded(job)

    def _stopJob(self) -> None:
        """Cancel a running job (kills the worker; the scene is untouched) and reset the GUI."""
        job = self._job
        if job is not None:
            job.cancel()
            self._onJobEnded(job)

    def _onJobEnded(self, job) -> None:
        if self._pollTimer is not None:
            self._pollTimer.stop()
        self._job = None
        self.ui.progressBar.hide()
        self._updateGUI()
        if job.state == DONE:
            output = job.result
            self.ui.statusLabel.text = output.summary()
            for warning in output.warnings:
                logging.warning(warning)
            if output.warnings:
                self.ui.statusLabel.text += "\n" + "\n".join(output.warnings)
            self.showResult(output)
        elif job.state == CANCELLED:
            self.ui.statusLabel.text = _("Cancelled: nothing was added to the scene.")
        else:
            self.ui.statusLabel.text = _("Failed.")
            slicer.util.errorDisplay(str(job.error))

    # ------------------------------------------------------------------ display and comparison ---------------
    def showResult(self, output) -> None:
        """Fused volume as background, edges as outlines, input A as a transparent foreground to fade in."""
        self._resultVolumeID = output.volume.GetID()
        self.ui.compareInputComboBox.currentIndex = 0
        self.ui.compareOpacitySliderWidget.value = 0.0
        inputA = self._parameterNode.inputVolumeA if self._parameterNode else None
        slicer.util.setSliceViewerLayers(background=output.volume, foreground=inputA, foregroundOpacity=0.0,
                                         fit=True)
        if output.edges is not None:
            output.edges.SetDisplayVisibility(True)

    def onCompareChanged(self, *args) -> None:
        """Fade the chosen input over the fused volume (0 = fused only, 1 = input only)."""
        node = self._parameterNode
        if node is None or self._resultVolumeID is None or slicer.mrmlScene.GetNodeByID(self._resultVolumeID) is None:
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
        missing = slicer_setup.self_test_missing()
        if missing:  # e.g. a fresh build machine without torch: a skip with the reason, not a failure
            logging.warning(missing)
            self.delayDisplay(missing)
            self.skipTest(missing)
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
