"""Fuse, time and score: every method on every pair (or every slice of a volume pair), every metric.

Fusion goes through :func:`MedFusionLib.engine.fuse_volumes`, so intensity presets, resampling and the
colour (YCbCr) path are the engine's. The images of one modality-pair folder are stacked into one volume and
fused in batches (``batch_size`` slices per call of the method); the engine's ``return_sources=True`` gives
the normalised sources the method saw, and each fused slice is scored against them with
:class:`MedFusionLib.metrics.SourcePair` -- every method's fused slice against the same prepared sources, so the
sources' share of the metrics is computed once per slice (same numbers as ``evaluate_all``).

Timing: seconds per slice of the method alone. The engine polls ``cancel()`` just before each batch and
calls ``progress()`` just after it (the fused batch is back on the host by then), so the time between the
two, measured with ``time.perf_counter``, is the method's time for that batch; each slice gets its batch's
time divided by the batch size. Reading files, normalisation, resampling and scoring are not included, and
each method runs once on one slice before timing starts (imports and first-call set-up are not timed).

Colour pairs (a pseudo-colour PET/SPECT image): the engine fuses the functional image's luma Y with the grey
source and keeps its chroma, so the output is RGB. They are scored on luminance: the fused RGB (8-bit, as
saved) -> BT.601 Y, against the functional image's Y and the grey source.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from ..atomic_file import write_bytes_atomically
from ..colour import luminance
from ..errors import InputError, MedFusionError
from ..metrics import METRICS, SourcePair, cddfuse
from ..settings import FusionSettings
from .pairs import PairFolder
from .progress import Bar, overall_bar

COLOUR_NOTE = ("Colour PET/SPECT pairs are scored on luminance (BT.601 Y, the engine's YCbCr path): "
               "fused RGB -> Y, against the functional image's Y and the grey (anatomical) image.")
SAVED_NOTE = ("Fused images are scored as saved, in 8 bits (grey rounded to 1/255; colour as 8-bit RGB), as in "
              "published tables.")
CDDFUSE_NOTE = ("Scored in the CDDFuse protocol (MedFusionLib.metrics.cddfuse): 8-bit grey images (colour via "
                "OpenCV's BGR -> grey), EN in bits, MI in nats (scikit-learn's mutual_info_score), SD and SF on "
                "0-255, VIF = pixel VIF summed over both sources, SSIM = scikit-image defaults (data_range 2) "
                "summed over both sources.")
MONTAGE_SLICES_PER_VOLUME = 3
# Volumes: a slice is scored when in each normalised source at least CONTENT_FRACTION of its pixels reach
# CONTENT_LEVEL (of full scale); slices outside B's field of view or nearly blank have nothing to score.
CONTENT_LEVEL, CONTENT_FRACTION = 0.05, 0.10

Say = Callable[[str], None]
# Scoring protocols: our metrics (MedFusionLib.metrics), or the CDDFuse scorer's 8 metrics its way (8-bit grey).
PROTOCOLS = {"medfusion": METRICS, cddfuse.PROTOCOL: cddfuse.CDDFUSE_METRICS}


@dataclass
class MontageRow:
    """One row of the montage: the two sources and each method's fused image (display arrays in [0, 1],
    (H, W) grey or (H, W, 3) RGB)."""
    label: str
    sources: List[Tuple[str, np.ndarray]]
    fused: Dict[str, np.ndarray] = field(default_factory=dict)
    aspect: float = 1.0  # pixel height / width in mm


@dataclass
class Evaluation:
    rows: List[dict]  # one per (pair, method): pair, image, method, seconds, then one key per metric
    methods: List[str]
    metrics: List[str]
    groups: List[str]  # modality-pair folders (or the volume pair), in order
    notes: List[str]
    warnings: List[str]
    montage: List[MontageRow]
    slice_shapes: List[Tuple[int, int]]
    settings: Dict[str, object]
    seconds: float = 0.0  # wall time of the whole evaluation
    protocol: str = "medfusion"  # key of PROTOCOLS: whose metrics the columns are


# ------------------------------------------------------------------------------------------- helpers


def method_specs(names: Sequence[str]) -> Dict[str, Tuple[str, dict]]:
    """Method label -> (registry name, checked options) for ``names`` (duplicates dropped); 'classic' or 'all'
    expand. Each spec is parsed once, here: the runner fuses with the parsed pair, the label names it.

    A label is a registry name or a variant with options, ``name[key=value,...]`` (e.g.
    ``mfenet[rule=add,edge_weight=0]``), written back in a canonical form.
    """
    from ..methods import REGISTRY
    from ..methods.registry import parse_method_spec

    out: Dict[str, Tuple[str, dict]] = {}
    for name in names:
        key = name.strip().lower()
        if key in ("all", "classic"):
            out.update((i.name, (i.name, {})) for i in REGISTRY.infos() if key == "all" or i.kind == "classic")
        else:
            method, options = parse_method_spec(name, REGISTRY)
            out.setdefault(method_label(method, options), (method, options))
    return out


def check_methods(names: Sequence[str]) -> List[str]:
    """The method labels of ``names`` (see method_specs)."""
    return list(method_specs(names))


def method_label(method: str, options: dict) -> str:
    if not options:
        return method
    return f"{method}[{','.join(f'{k}={v}' for k, v in options.items())}]"


def check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise InputError(f"Unknown scoring protocol {protocol!r}; choose from: {', '.join(PROTOCOLS)}.")
    return protocol


def check_metrics(names: Optional[Sequence[str]], protocol: str = "medfusion") -> List[str]:
    registry = PROTOCOLS[check_protocol(protocol)]
    if names is None:
        return list(registry)
    lookup = {n.lower(): n for n in registry}
    unknown = [n for n in names if n.lower() not in lookup]
    if unknown:
        raise InputError(f"Unknown metric(s) {', '.join(map(repr, unknown))} for the {protocol} protocol; "
                         f"choose from: {', '.join(registry)}.")
    return list(dict.fromkeys(lookup[n.lower()] for n in names))


class _BatchClock:
    """Per-slice method time from the engine's cancel (before a batch) and progress (after it) callbacks."""

    def __init__(self, n_slices: int):
        self.per_slice = np.full(n_slices, np.nan)
        self._start = 0.0
        self._done = 0

    def cancel(self) -> bool:
        self._start = time.perf_counter()
        return False

    def progress(self, done: int, total: int) -> None:
        elapsed = time.perf_counter() - self._start
        self.per_slice[self._done:done] = elapsed / max(1, done - self._done)
        self._done = done


def _score_one(task):
    a, b, fused_images, names, protocol = task
    if protocol == cddfuse.PROTOCOL:
        return [cddfuse.score(a, b, fused, names) for fused in fused_images]
    # One SourcePair per slice: the sources' share of the metrics is computed once for all methods.
    sources = SourcePair(a, b)
    return [sources.score(fused, names) for fused in fused_images]


class Scorer:
    """Scores (a, b, fused) slices, in this process or in a pool of ``jobs`` worker processes."""

    def __init__(self, metrics: Sequence[str], jobs: int = 1, protocol: str = "medfusion"):
        if jobs < 1:
            raise InputError(f"--jobs must be at least 1, not {jobs}.")
        self.metrics, self.jobs, self._pool = list(metrics), jobs, None
        self.protocol = check_protocol(protocol)

    def __enter__(self):
        if self.jobs > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn, not fork: the parent has torch's thread pools running, which a fork would inherit broken.
            self._pool = ProcessPoolExecutor(self.jobs, mp_context=multiprocessing.get_context("spawn"))
        return self

    def __exit__(self, *exc):
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
        return False

    def score(self, a: np.ndarray, b: np.ndarray, fused: Sequence[np.ndarray], bar=None) -> List[List[Dict[str, float]]]:
        """Scores of slice i of every fused stack in ``fused`` (one per method) against a[i], b[i]:
        out[i][k] is the metrics dict of fused[k][i]."""
        tasks = [(a[i], b[i], [stack[i] for stack in fused], self.metrics, self.protocol) for i in range(len(a))]
        results = map(_score_one, tasks) if self._pool is None else \
            self._pool.map(_score_one, tasks, chunksize=max(1, len(tasks) // (4 * self.jobs)))
        out = []
        for result in results:
            out.append(result)
            if bar is not None:
                bar.update(len(fused))
        return out


def fused_luminance(fused: np.ndarray, colour: bool) -> np.ndarray:
    """The grey image to score, as it is saved: 8-bit grey in [0, 1] steps of 1/255, or the BT.601 Y of
    8-bit RGB. Published tables score saved 8-bit images, and some metrics depend on it: FMI gives 0 to a
    window where a blank source meets a non-blank fused patch, so a network's background of 0.001 (invisible,
    0 once saved) cut MFEnet's FMI_pixel from 0.67 to 0.24 on a CT-MRI validation pair when scored in float."""
    if colour:
        return luminance(fused.astype(np.float32) / 255.0)
    return (np.rint(np.clip(fused, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def to_display(fused: np.ndarray, colour: bool) -> np.ndarray:
    return fused.astype(np.float32) / 255.0 if colour else np.clip(fused, 0.0, 1.0)


def saved_grey(array: np.ndarray) -> np.ndarray:
    """A [0, 1] grey image as save_png writes it: 8-bit, rounded in float64."""
    return np.clip(np.rint(np.asarray(array, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def save_png(array: np.ndarray, path: Path, colour: bool) -> None:
    """8-bit PNG (RGB for a colour fusion), written to a temporary name and renamed into place."""
    import cv2

    if colour:
        data = cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_RGB2BGR)
    else:
        data = saved_grey(array)
    encoded, png = cv2.imencode(".png", data)
    if not encoded:
        raise InputError(f"Could not write '{path}'.")
    write_bytes_atomically(path, png.tobytes())


# ---------------------------------------------------------------------------------- the fusion loop


@dataclass
class _Job:
    """One fusion input: two sitk images (a stack of 2D pairs, or two volumes) and how to report its slices."""
    group: str  # the row's 'pair' column
    a: sitk.Image
    b: sitk.Image
    axis: str
    names: List[str]  # the 'image' column of each scored slice
    keep: np.ndarray  # indices (in slice order) of the slices to score
    montage: Dict[int, MontageRow]  # slice index -> montage row
    name_a: str
    name_b: str
    sliced_dim: int  # the sitk index dimension (0 i, 1 j, 2 k) that runs across the slices
    grey_sources: Optional[Tuple[np.ndarray, np.ndarray]] = None  # CDDFuse protocol: the files' 8-bit greys


class Runner:
    def __init__(self, methods: Sequence[str], metrics: Optional[Sequence[str]] = None,
                 settings: Optional[FusionSettings] = None, jobs: int = 1,
                 save_fused: Optional[Path] = None, say: Optional[Say] = None, progress_bars: bool = False,
                 protocol: str = "medfusion"):
        """``settings``: checked settings (FusionSettings.create) whose presets, device and batch size every
        method runs with; its method, edges and registration check are the evaluation's own."""
        self.specs = method_specs(methods)
        self.methods = list(self.specs)
        self.protocol = check_protocol(protocol)
        self.metrics = check_metrics(metrics, protocol)
        # Scoring runs the methods alone: no edge overlay, no registration check (fuse checks registration).
        shared = dataclasses.replace(settings or FusionSettings.create(), edges=False, return_sources=True,
                                     check_registration=False)
        self.device, self.batch_size = shared.device, shared.batch_size
        self.preset_a, self.preset_b = shared.preset_a, shared.preset_b
        # Each method's settings, checked once; a job only adds its axis and source names.
        self.settings = {label: shared.for_method(method, options)
                         for label, (method, options) in self.specs.items()}
        if jobs < 1:
            raise InputError(f"--jobs must be at least 1, not {jobs}.")
        self.jobs, self.save_fused = jobs, save_fused
        self.say = say or (lambda message: None)
        self.progress_bars = progress_bars
        self.overall = Bar(False, 0, "")  # replaced by begin() once the number of results is known
        self.rows: List[dict] = []
        self.warnings: List[str] = []
        self.colour_groups: List[str] = []
        self._warmed: set = set()
        self.devices: List[str] = []  # the devices the engine actually used
        self._position: Dict[Tuple[str, str], int] = {}  # (pair, image) -> order of appearance

    def sorted_rows(self) -> List[dict]:
        """The rows by pair (in order of appearance), then method (in the order given)."""
        return sorted(self.rows, key=lambda r: (self._position[(r["pair"], r["image"])],
                                                self.methods.index(r["method"])))

    def begin(self, n_slices: int) -> None:
        """Start the overall progress bar: ``n_slices`` slices to score, each with every method."""
        self.overall.close()
        self.overall = overall_bar(self.progress_bars, n_slices * len(self.methods))

    def close_bars(self) -> None:
        self.overall.close()

    def _warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def _fuse(self, job: _Job, label: str, clock: Optional[_BatchClock]):
        from ..engine import fuse

        settings = dataclasses.replace(self.settings[label], axis=job.axis, name_a=job.name_a, name_b=job.name_b)
        return fuse(job.a, job.b, settings, cancel=clock.cancel if clock else None,
                    progress=clock.progress if clock else None)

    def _warm_up(self, job: _Job, method: str) -> None:
        """Run ``method`` once on one slice so that imports and first-call set-up are not timed."""
        if method in self._warmed:
            return
        from ..geometry import same_grid

        index = [slice(None)] * 3
        index[job.sliced_dim] = slice(int(job.keep[0]), int(job.keep[0]) + 1)
        a = job.a[tuple(index)]
        b = job.b[tuple(index)] if same_grid(job.a, job.b) else job.b
        try:
            self._fuse(_Job(job.group, a, b, job.axis, [], np.zeros(1, int), {}, job.name_a, job.name_b,
                            job.sliced_dim), method, None)
        except MedFusionError:
            pass  # best effort only: the timed run reports any real problem
        self._warmed.add(method)

    def run_job(self, job: _Job, scorer: Scorer) -> None:
        from ..geometry import slice_layout

        for name in job.names:
            self._position.setdefault((job.group, name), len(self._position))
        # Fuse with every method first, then score slice by slice, all methods at once, so that each slice's
        # sources are prepared once.
        seconds, groups = self._fuse_all(job, slice_layout(job.a, job.axis))
        scores: Dict[str, List[Dict[str, float]]] = {}
        started = time.perf_counter()
        bar = Bar(self.progress_bars, len(job.keep) * len(self.methods), f"{job.group} scoring",
                  overall=self.overall)
        try:
            for src_a, src_b, methods, greys in groups:
                if self.protocol == cddfuse.PROTOCOL:
                    src_a, src_b = job.grey_sources or (_grey255(src_a), _grey255(src_b))
                per_slice = scorer.score(src_a, src_b, greys, bar)
                for k, method in enumerate(methods):
                    scores[method] = [row[k] for row in per_slice]
        finally:
            bar.close()
        scoring = (time.perf_counter() - started) / max(1, len(job.keep) * len(self.methods))
        for method in self.methods:
            for i, name in enumerate(job.names):
                self.rows.append({"pair": job.group, "image": name, "method": method,
                                  "seconds": float(seconds[method][i]), **scores[method][i]})
            self.say(f"{job.group:<12} {method:<10} {len(job.keep):>4} slice(s)  fusion "
                     f"{np.nanmean(seconds[method]):.4f} s/slice  scoring {scoring:.3f} s/slice")

    def _fuse_all(self, job: _Job, layout):
        """Fuse ``job`` with every method (saving and montage right away, keeping only the grey to score).

        Returns per-slice seconds per method and the scoring groups (src_a, src_b, methods, greys): one in
        practice, as the engine normalises the sources alike for every method; a method whose sources differ
        anyway is scored against its own.
        """
        seconds: Dict[str, np.ndarray] = {}
        groups: List[Tuple[np.ndarray, np.ndarray, List[str], List[np.ndarray]]] = []  # sources, methods, greys
        for method in self.methods:
            self._warm_up(job, method)
            clock = _BatchClock(job.a.GetSize()[job.sliced_dim])
            result = self._fuse(job, method, clock)
            for message in result.warnings:
                self._warn(message)
            if result.device not in self.devices:
                self.devices.append(result.device)
            colour = result.colour_source is not None
            if colour and job.group not in self.colour_groups:
                self.colour_groups.append(job.group)
            fused = layout.to_slices(sitk.GetArrayFromImage(result.fused))[job.keep]
            src_a, src_b = (layout.to_slices(sitk.GetArrayFromImage(s))[job.keep] for s in result.sources)
            seconds[method] = clock.per_slice[job.keep]
            for i, index in enumerate(job.keep):
                if self.save_fused is not None:
                    save_png(fused[i], self.save_fused / method / job.group / f"{Path(job.names[i]).stem}.png",
                             colour)
                if int(index) in job.montage:
                    job.montage[int(index)].fused[method] = to_display(fused[i], colour)
            grey = protocol_grey(fused, colour) if self.protocol == cddfuse.PROTOCOL else fused_luminance(fused, colour)
            group = next((g for g in groups if np.array_equal(g[0], src_a) and np.array_equal(g[1], src_b)), None)
            if group is None:
                group = (src_a, src_b, [], [])
                groups.append(group)
            group[2].append(method)
            group[3].append(grey)
        return seconds, groups


def _grey255(sources: np.ndarray) -> np.ndarray:
    """Engine-normalised [0, 1] sources as 8-bit grey levels (0-255 floats)."""
    return saved_grey(sources).astype(np.float64)


def protocol_grey(fused: np.ndarray, colour: bool) -> np.ndarray:
    """The saved 8-bit fused slices as the CDDFuse scorer reads them (colour -> OpenCV grey), 0-255 floats."""
    if colour:
        return np.stack([cddfuse.cddfuse_grey(np.asarray(f, dtype=np.uint8)) for f in fused])
    return saved_grey(fused).astype(np.float64)


# ------------------------------------------------------------------------------------ the two modes


def _read_stack(paths: Sequence[Path], what: str) -> np.ndarray:
    from ..volume_io import read_volume

    arrays = []
    for path in paths:
        image = read_volume(path)
        if image.GetDimension() != 2:
            raise InputError(f"'{path}' is not a 2D image; {what} folders hold 2D slices (PNG, TIFF, ...).")
        arrays.append(sitk.GetArrayFromImage(image))
    shapes = {(a.shape, a.dtype.str) for a in arrays}
    if len(shapes) > 1:
        raise InputError(f"The {what} images do not all have the same size and type "
                         f"({', '.join(sorted(f'{s} {d}' for s, d in shapes))}); evaluate such folders separately.")
    return np.stack(arrays)


def _as_volume(stack: np.ndarray) -> sitk.Image:
    """(N, H, W[, 3]) -> a 3D image with the identity geometry, whose axial slices are exactly stack[i]."""
    return sitk.GetImageFromArray(stack, isVector=stack.ndim == 4)


def _file_greys(runner: Runner, stack_a: np.ndarray, stack_b: np.ndarray):
    """The CDDFuse protocol scores the source files' own 8-bit greys (colour via OpenCV's BGR -> grey); other
    data (not 8-bit) is scored on the engine-normalised sources in 8 bits."""
    if runner.protocol != cddfuse.PROTOCOL or stack_a.dtype != np.uint8 or stack_b.dtype != np.uint8:
        return None
    return tuple(np.stack([cddfuse.cddfuse_grey(image) for image in stack]) for stack in (stack_a, stack_b))


def _display_source(stack: np.ndarray, index: int) -> np.ndarray:
    image = stack[index].astype(np.float32)
    return image / 255.0 if stack.dtype == np.uint8 else (image - image.min()) / max(np.ptp(image), 1e-12)


def _middle(n: int) -> int:
    return (n - 1) // 2


def evaluate_pairs(folders: Sequence[PairFolder], runner: Runner) -> Evaluation:
    """Every method on every pair of ``folders`` (see :mod:`.pairs`), scored with every metric."""
    started = time.perf_counter()
    montage: List[MontageRow] = []
    shapes = []
    runner.begin(sum(len(folder.pairs) for folder in folders))
    with Scorer(runner.metrics, runner.jobs, runner.protocol) as scorer:
        for folder in folders:
            pairs = folder.pairs
            stack_a = _read_stack([p.path_a for p in pairs], f"{folder.name}/{folder.modality_a}")
            stack_b = _read_stack([p.path_b for p in pairs], f"{folder.name}/{folder.modality_b}")
            shapes.append(tuple(stack_a.shape[1:3]))
            middle = _middle(len(pairs))
            row = MontageRow(f"{folder.name} {pairs[middle].name}",
                             [(folder.modality_a, _display_source(stack_a, middle)),
                              (folder.modality_b, _display_source(stack_b, middle))])
            montage.append(row)
            job = _Job(group=folder.name, a=_as_volume(stack_a), b=_as_volume(stack_b), axis="axial",
                       names=[p.name for p in pairs], keep=np.arange(len(pairs)), montage={middle: row},
                       name_a=f"{folder.name}/{folder.modality_a}", name_b=f"{folder.name}/{folder.modality_b}",
                       sliced_dim=2, grey_sources=_file_greys(runner, stack_a, stack_b))
            runner.run_job(job, scorer)
    groups = [f.name for f in folders]
    notes = [f"{f.name}: {len(f.pairs)} pair(s); reference (engine's A) = {f.modality_a}, "
             f"second source (B) = {f.modality_b}." for f in folders]
    return _finish(runner, groups, notes, montage, shapes, started)


def evaluate_volumes(path_a, path_b, runner: Runner, axis: str = "axial", every: int = 1,
                     limit: Optional[int] = None) -> Evaluation:
    """Every method on two volumes (B resampled onto A), scored slice by slice along ``axis``.

    Scored slices: those with content in both normalised sources (see CONTENT_LEVEL; a slice outside B's
    field of view, or nearly blank in either source, has nothing to score); then every ``every``-th of them;
    then ``limit`` of them evenly spaced.
    """
    from ..geometry import slice_layout
    from ..volume_io import display_name, read_volume

    started = time.perf_counter()
    if every < 1:
        raise InputError(f"--every must be at least 1, not {every}.")
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1, not {limit}.")
    a, b = read_volume(path_a), read_volume(path_b)
    if a.GetDimension() != 3 or b.GetDimension() != 3:
        raise InputError("--volumes takes two 3D volumes; for 2D image pairs give a folder of pairs.")
    name_a, name_b = display_name(path_a), display_name(path_b)
    group = f"{name_a}-{name_b}"

    # Which slices hold something to score: decided once, on the sources the engine normalises.
    from ..engine import fuse_volumes

    probe = fuse_volumes(a, b, method="average", axis=axis, preset_a=runner.preset_a, preset_b=runner.preset_b,
                         device="cpu", edges=False, name_a=name_a, name_b=name_b, return_sources=True,
                         check_registration=False)
    layout = slice_layout(a, axis)
    src_a, src_b = (layout.to_slices(sitk.GetArrayFromImage(s)) for s in probe.sources)
    content = [(s >= CONTENT_LEVEL).mean(axis=(1, 2)) >= CONTENT_FRACTION for s in (src_a, src_b)]
    varies = [int(i) for i in np.flatnonzero(content[0] & content[1])]
    if not varies:
        raise InputError(f"No {axis} slice of '{name_a}' has content in both volumes; nothing to score.")
    keep = varies[::every]
    if limit is not None and limit < len(keep):
        keep = [keep[int(round(i))] for i in np.linspace(0, len(keep) - 1, limit)]
    keep = np.asarray(sorted(set(keep)))
    digits = max(3, len(str(src_a.shape[0] - 1)))
    names = [f"{axis}_{i:0{digits}d}" for i in keep]
    montage_at = sorted({int(keep[int(round(q * (len(keep) - 1)))]) for q in (0.25, 0.5, 0.75)})
    row_mm, col_mm = layout.spacing(a)
    montage = {i: MontageRow(f"{group} {axis} {i}", [(name_a, np.clip(src_a[i], 0, 1)),
                                                      (name_b, np.clip(src_b[i], 0, 1))], aspect=row_mm / col_mm)
               for i in montage_at[:MONTAGE_SLICES_PER_VOLUME]}
    job = _Job(group=group, a=a, b=b, axis=axis, names=names, keep=keep, montage=montage,
               name_a=name_a, name_b=name_b, sliced_dim=2 - layout.array_axis)
    runner.begin(len(keep))
    with Scorer(runner.metrics, runner.jobs, runner.protocol) as scorer:
        runner.run_job(job, scorer)
    notes = [f"{group}: {len(keep)} of {src_a.shape[0]} {axis} slice(s) scored (those where at least "
             f"{CONTENT_FRACTION:.0%} of the pixels of both normalised sources reach {CONTENT_LEVEL:g}{', every ' + str(every) + 'th' if every > 1 else ''}"
             f"{', ' + str(limit) + ' evenly spaced' if limit is not None else ''}); '{name_b}' is resampled "
             f"onto the grid of '{name_a}' (reference), overlap {100 * probe.overlap:.1f}%; intensity windows: "
             f"A {probe.windows['A'].how}, B {probe.windows['B'].how}."]
    return _finish(runner, [group], notes, list(montage.values()), [tuple(src_a.shape[1:3])], started)


def _finish(runner: Runner, groups, notes, montage, shapes, started) -> Evaluation:
    import torch

    runner.close_bars()
    notes = list(notes) + [SAVED_NOTE]
    if runner.colour_groups:
        notes.append(COLOUR_NOTE + f" ({', '.join(runner.colour_groups)})")
    if runner.protocol == cddfuse.PROTOCOL:
        notes.append(CDDFUSE_NOTE)
    settings = {"device": ", ".join(runner.devices) or runner.device, "batch": runner.batch_size,
                "torch_threads": torch.get_num_threads(), "preset_a": runner.preset_a.describe(),
                "preset_b": runner.preset_b.describe()}
    return Evaluation(rows=runner.sorted_rows(), methods=runner.methods, metrics=runner.metrics, groups=list(groups),
                      notes=notes, warnings=runner.warnings, montage=montage,
                      slice_shapes=sorted(set(shapes)), settings=settings, seconds=time.perf_counter() - started,
                      protocol=runner.protocol)
