"""The evaluation harness behind ``medfusion evaluate``: fuse, time and score every method on a set of pairs.

    from MedFusionLib.evaluation import evaluate
    evaluation, paths = evaluate(pairs_dir="../shared/data/harvard", methods=["average", "laplacian"],
                                 out="eval-out", limit=5)

Modules: :mod:`.pairs` finds and selects the image pairs, :mod:`.runner` fuses (through ``fuse_volumes``),
times and scores them, :mod:`.report` writes results.csv, results.md, charts/ and montage.png.
"""
from __future__ import annotations

import datetime
import os
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import InputError
from ..settings import FusionSettings
from .pairs import discover, parse_cases, parse_list, select
from .runner import COLOUR_NOTE, Evaluation, Runner, evaluate_pairs, evaluate_volumes

__all__ = ["COLOUR_NOTE", "Evaluation", "evaluate", "machine_description", "parse_cases", "parse_list"]


def machine_description() -> str:
    """'AMD EPYC, 2 cores, torch 2.x with 1 thread(s)': the CPU model from /proc/cpuinfo where there is one."""
    import torch

    from ..doctor import cpu_model

    return f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__.split('+')[0]} with " \
           f"{torch.get_num_threads()} thread(s)"


def _prepare_out(out) -> Path:
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise InputError(f"Output folder '{out}' is a file; give a folder for the evaluation results.")
    try:
        path.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".medfusion-probe-", dir=path)
    except OSError:
        raise InputError(f"Output folder '{out}' cannot be created or is not writable.") from None
    os.close(handle)
    os.unlink(probe)
    return path


# The fusion settings an evaluation takes as keywords (declared, with their defaults, in settings.FusionSettings).
FUSION_KEYWORDS = ("preset_a", "preset_b", "device", "batch_size", "precision")
# Methods are scored as written (float32) unless asked otherwise: a reduced precision is a speed setting, held to
# a PSNR guard (acceleration.py), but some metrics react to its sub-visible noise in flat regions (measured:
# MFEnet int8 FMI_pixel 0.613 vs 0.684 in float32 on 23 validation pairs, Q_AB/F 0.707 vs 0.709).
EVALUATION_PRECISION = "fp32"


def evaluate(out, pairs_dir=None, volumes: Optional[Sequence] = None, methods: Sequence[str] = ("classic",),
             metrics: Optional[Sequence[str]] = None, folders: Optional[Sequence[str]] = None, cases=None,
             every: int = 1, limit: Optional[int] = None, axis: str = "axial", jobs: int = 1,
             save_fused: bool = False, say: Optional[Callable[[str], None]] = None,
             warn: Optional[Callable[[str], None]] = None, progress_bars: bool = False, protocol: str = "medfusion",
             command: Optional[str] = None, header: Sequence[str] = (), settings: Optional[FusionSettings] = None,
             **fusion) -> Tuple[Evaluation, Dict[str, Path]]:
    """Run an evaluation and write its report to ``out``; returns the evaluation and the written paths.

    Give either ``pairs_dir`` (a folder of modality-pair folders, see :mod:`.pairs`) or ``volumes`` = (A, B).
    ``cases``: a set of case ids, or folder -> case ids (e.g. a validation split). ``methods`` may contain
    'classic' or 'all'. ``every``/``limit`` subsample (see :func:`.pairs.select` and
    :func:`.runner.evaluate_volumes`). ``say`` receives progress lines, ``warn`` warnings (default: ``say``).
    ``protocol``: "medfusion" (our metrics) or "cddfuse" (the CDDFuse scorer's 8 metrics, scored its way on
    8-bit grey images; see :mod:`MedFusionLib.metrics.cddfuse`); ``metrics`` names that protocol's metrics.
    The methods run with ``settings`` (a FusionSettings) or with the keywords ``preset_a``, ``preset_b``,
    ``device``, ``batch_size`` and ``precision`` (FUSION_KEYWORDS, as in FusionSettings; precision defaults to
    EVALUATION_PRECISION, float32, not the engine's "auto"), checked here once.
    Raises :class:`InputError` for anything the caller can fix.
    """
    unknown = sorted(set(fusion) - set(FUSION_KEYWORDS))
    if unknown:
        raise TypeError(f"evaluate() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}")
    if settings is not None and fusion:
        raise TypeError("evaluate() takes either settings or the keywords " + ", ".join(FUSION_KEYWORDS))
    say = say or (lambda message: None)
    warn = warn or say
    if (pairs_dir is None) == (volumes is None):
        raise InputError("Give either a folder of image pairs or --volumes A B, not both and not neither.")
    out = Path(out)
    fused_dir = out / "fused" if save_fused else None
    fusion.setdefault("precision", EVALUATION_PRECISION)
    runner = Runner(methods, metrics, settings=settings or FusionSettings.create(**fusion), jobs=jobs,
                    save_fused=fused_dir, say=say, progress_bars=progress_bars, protocol=protocol)
    if every < 1 or (limit is not None and limit < 1):
        raise InputError(f"--every and --limit must be at least 1 (got {every} and {limit}).")
    if pairs_dir is not None:
        warnings: List[str] = []
        found = discover(pairs_dir, warnings)
        chosen = select(found, folders, cases, every, limit)
        for message in warnings:
            warn(message)
            runner.warnings.append(message)
        reported = len(runner.warnings)
        _prepare_out(out)
        say(f"evaluating {sum(len(f.pairs) for f in chosen)} pair(s) in {', '.join(f.name for f in chosen)} "
            f"with {', '.join(runner.methods)}; {len(runner.metrics)} metrics")
        try:
            evaluation = evaluate_pairs(chosen, runner)
        finally:
            runner.close_bars()  # also on an error or Ctrl-C: the terminal is left clean
        source = f"Data: `{pairs_dir}`"
    else:
        reported = 0
        if len(volumes) != 2:
            raise InputError("--volumes takes exactly two files: A (the reference) and B.")
        _prepare_out(out)
        say(f"evaluating {volumes[0]} + {volumes[1]} ({axis} slices) with {', '.join(runner.methods)}; "
            f"{len(runner.metrics)} metrics")
        try:
            evaluation = evaluate_volumes(volumes[0], volumes[1], runner, axis=axis, every=every, limit=limit)
        finally:
            runner.close_bars()  # also on an error or Ctrl-C: the terminal is left clean
        source = f"Data: `{volumes[0]}` (A, reference) + `{volumes[1]}` (B)"
    for message in evaluation.warnings[reported:]:
        warn(message)
    if any(n.startswith(COLOUR_NOTE) for n in evaluation.notes):  # only when a colour pair was scored
        say(f"note: {COLOUR_NOTE}")
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    lines = ([f"Command: `{command}`"] if command else []) + [
        f"Date: {stamp}; run time {evaluation.seconds / 60:.1f} min (reading, fusion and scoring)", source,
        f"Machine: {machine_description()}", *header]
    paths = _write(evaluation, out, lines)
    return evaluation, paths


def _write(evaluation: Evaluation, out: Path, header: Sequence[str]) -> Dict[str, Path]:
    from .report import write_all

    return write_all(evaluation, out, header)
