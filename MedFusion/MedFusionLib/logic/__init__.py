"""MedFusionLogic (the package: parameters.py, inputs.py, outputs.py, one job each): the MRML side of the Slicer module (no Qt), usable from Slicer and from pytest (slicer-core).

``MedFusionLogic().process(volumeA, volumeB, method=...)`` converts the two volume nodes to SimpleITK images,
runs :func:`MedFusionLib.engine.fuse_volumes`, and adds the fused volume and an edge segmentation to the scene.
``start(...)`` (same options) runs the engine in a worker process instead and returns a job to poll (what the
widget does, so that the GUI never waits and torch never runs in Slicer's process; see fusion_job.py). Both go
through ``prepare`` (checks, MRML -> images, the keywords checked once into FusionSettings: keywords.py derives
them from FusionSettings and the registry, nothing is declared twice) and ``_finish`` (results -> scene, on the caller's thread).

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
    :data:`PARAMETERS` are the parameters of the widget's ``parameterNodeWrapper`` class (MedFusion.py declares
    the same names; a test checks it), :data:`OPTION_PARAMETERS` the other method options, whose controls the
    widget builds from the registry (controls.py). Defaults come from FusionSettings and the registry
    (parameters.py); values are stored the way the wrapper stores them (enums by member name, bools as
    "True"/"False", nodes as references), so a scene saved from one side loads on the other.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from ..errors import InputError
from ..methods import DEFAULT_METHOD, REGISTRY
from ..settings import EDGE_DETAIL_DEFAULT, EDGE_DETAIL_RANGE, FusionSettings  # noqa: F401 (the widget's range)
from .inputs import InputsMixin
from .keywords import KEYWORDS, OPTION_CONTROLS, setting_default, settings_from_keywords  # noqa: F401
from .outputs import MedFusionOutput, OutputsMixin, _OutputTransaction, _SegmentationState, _VolumeState  # noqa: F401
from .parameters import (ALL_PARAMETERS, AXES, DEVICES, EDGE_COLOURS, EDGE_SEGMENT_IDS, EDGE_STRENGTH_RANGE,  # noqa: F401
                         EDGE_WEIGHT_OPTION, FUSION_RULES, MODULE_NAME, OPTION_PARAMETERS, PARAMETER_NAMES,
                         PARAMETERS, RGB_WINDOW_LEVEL, RULE_OPTION,
                         SCALAR_WINDOW_LEVEL, Parameter, ParameterNodeMixin, _LogicBase, method_accepts,
                         method_help_html, method_options_for)

log = logging.getLogger(__name__)


@dataclass
class PreparedFusion:
    """A checked fusion request: the nodes, the inputs as SimpleITK images and the checked settings."""
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


class MedFusionLogic(ParameterNodeMixin, InputsMixin, OutputsMixin, _LogicBase):
    """Fuse two volume nodes into a new (or user-selected) volume node, plus an edge segmentation.

    MRML only: no Qt, no dialogs. Errors are :class:`MedFusionLib.errors.InputError` (one sentence for the user)
    or :class:`MedFusionLib.errors.Cancelled`; either way nothing is added to the scene.
    """

    def __init__(self, parent=None):
        _LogicBase.__init__(self)
        self.workerPython: Optional[str] = None  # None: sys.executable (in Slicer: its own Python)
        self.workDirectory: Optional[str] = None  # None: the system's temporary folder

    # ---------------------------------------------------------------- the run -------------------------------
    def processParameterNode(self, parameterNode, progress=None, cancel=None) -> MedFusionOutput:
        """Run :meth:`process` with the values of a parameter node."""
        return self.process(progress=progress, cancel=cancel, **self.optionsFromParameters(parameterNode))

    def startParameterNode(self, parameterNode, **jobOptions):
        """Run :meth:`start` with the values of a parameter node (what the widget's Apply does)."""
        return self.start(**jobOptions, **self.optionsFromParameters(parameterNode))

    def prepare(self, volumeA, volumeB, method: str = DEFAULT_METHOD, outputVolume=None, outputEdges=None,
                colourB: Optional[str] = None, **options) -> "PreparedFusion":
        """Check the nodes and options and read the inputs (MRML, main thread); nothing is added to the scene.

        ``options`` are the fusion settings under their FusionSettings names in camelCase (``axis``, ``presetA``,
        ``presetB``, ``device``, ``batchSize``, ``edges``, ``colourMode``, ``edgeDetail``, ``checkRegistration``,
        ``methodOptions``, ...; defaults as declared there) and the method options under their control names
        (``fusionRule``, ``edgeStrength``, ``eemWeight``, ...: logic/controls.py, from the registry), which reach
        the method only when its registry entry declares them; ``methodOptions`` are passed as they are and win.
        They are checked here, once (keywords.py), into the :class:`~MedFusionLib.settings.FusionSettings`
        that both the in-process run and the worker pass to the engine as they are.
        ``colourB`` colours a scalar functional B (see the colourB parameter): the fused volume is then RGB,
        its colour shown as ``colourMode`` says (auto, overlay, ycbcr; see functional_colour.py). ``edgeDetail``
        (0..1) asks for fewer or more edges; ``checkRegistration`` first estimates B's shift against A and adds a
        warning (``output.warnings``) beyond max(3 mm, one voxel of B).
        """
        import time

        started = time.perf_counter()
        self._validate(volumeA, volumeB, outputVolume, outputEdges)
        info = REGISTRY.get(method)
        presetB = options.get("presetB", setting_default("preset_b"))
        table_b, presetB = self._colour_for_b(volumeB, colourB, presetB)
        if "presetB" in options or table_b is not None:
            options["presetB"] = presetB
        settings = settings_from_keywords(info.name, options, name_a=volumeA.GetName(), name_b=volumeB.GetName(),
                                          colormap_b=table_b)
        warnings: List[str] = []
        image_a, image_b = self._input_images(volumeA, volumeB, warnings)

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
        return PreparedFusion(volumeA, volumeB, info, image_a, image_b, settings, outputVolume,
                              outputEdges if settings.edges else None, warnings, started)

    def process(self, volumeA, volumeB, progress: Optional[Callable[[int, int], None]] = None,
                cancel: Optional[Callable[[], bool]] = None, **options) -> MedFusionOutput:
        """Fuse ``volumeB`` into ``volumeA``'s geometry in this process, blocking (scripts, tests); see the module
        docstring. ``options`` are those of :meth:`prepare`. ``progress(done, total)`` is called after each batch
        of slices, ``cancel()`` before each; a True from ``cancel`` raises :class:`MedFusionLib.errors.Cancelled`.
        Returns a :class:`MedFusionOutput`.
        """
        prepared = self.prepare(volumeA, volumeB, **options)
        from ..engine import fuse  # torch and OpenCV load here, not at import

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
        from ..fusion_job import DEFAULT_STALL_TIMEOUT_S, FusionJob

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
