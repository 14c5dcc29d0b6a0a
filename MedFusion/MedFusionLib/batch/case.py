"""The task a Dask worker runs for one case: fuse it, write its outputs atomically, log it, return its record.

A case's own failure (bad file, no overlap, disk trouble, even an unexpected exception) never raises out of
``run_case``: it becomes a failed record with one sentence, so the other cases go on. Per-case log:
``DIR/<id>/log.txt`` (appended on every run, so earlier attempts stay readable).
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from .. import __version__
from ..errors import MedFusionError
from .cohort import CaseSpec
from .manifest import input_identity
from .staging import StagedOutputs
from .summary import FAILED, OK, CaseRecord

LOG_NAME = "log.txt"


class CaseLog:
    """Timestamped lines in the case's log file, plus the library's own warnings raised by this case's thread
    (two cases fusing in one process, e.g. threads of an in-process cluster, do not mix their logs)."""

    def __init__(self, path: Path):
        self.path = path
        self._stream = open(path, "a", encoding="utf-8")
        self._handler = logging.StreamHandler(self._stream)
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        thread = threading.get_ident()
        self._handler.addFilter(lambda record: record.thread == thread)
        logging.getLogger("MedFusionLib").addHandler(self._handler)

    def line(self, message: str) -> None:
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._stream.write(f"{stamp} {message}\n")
        self._stream.flush()

    def close(self) -> None:
        logging.getLogger("MedFusionLib").removeHandler(self._handler)
        self._stream.close()


@contextmanager
def case_log(case_dir: Path):
    log = CaseLog(case_dir / LOG_NAME)
    try:
        yield log
    finally:
        log.close()


def limit_threads(threads: Optional[int]) -> str:
    """One case's share of the cores, for every library that keeps its own thread pool; says what is in force.

    torch's limit holds for the calling thread (OpenMP's setting is per thread), so cases running in threads of
    one process keep their own; OpenCV's and SimpleITK's are process-wide."""
    import cv2
    import SimpleITK as sitk
    import torch

    if threads:
        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    return (f"threads: torch {torch.get_num_threads()}, OpenCV {cv2.getNumThreads()}, "
            f"SimpleITK {sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()}")


def _fuse_and_write(spec: CaseSpec, case_dir: Path, digest: str, log: CaseLog, started: float) -> CaseRecord:
    from ..engine import fuse
    from ..volume_io import display_name, read_volume

    warnings: list = []
    a, b = read_volume(spec.a, warnings), read_volume(spec.b, warnings)
    for message in warnings:  # the engine logs its own warnings (captured by the case log); these are the reader's
        log.line(f"warning: {message}")
    name_a, name_b = display_name(spec.a), display_name(spec.b)
    result = fuse(a, b, spec.engine_settings(name_a, name_b))
    warnings += result.warnings
    log.line(f"fused: {result.summary()}")
    staged = StagedOutputs(case_dir)
    try:
        staged.add_volume("fused", result.fused, "fused.nrrd")
        if spec.edges:
            staged.add_volume("edges", result.edges, "edges.nrrd")
        if spec.preview:
            from ..preview import save_preview

            staged.add_png("preview", "preview.png", lambda path: save_preview(
                a, b, result, path, titles=(name_a, name_b), colormap_b=spec.colormap_b))
        offset = getattr(result, "registration_offset_mm", None)  # from the engine's registration check
        seconds = time.perf_counter() - started
        manifest = {"id": spec.id, "settings_hash": digest, "settings": spec.fusion_settings(),
                    "inputs": {"a": input_identity(spec.a), "b": input_identity(spec.b)}, "version": __version__,
                    "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "seconds": seconds,
                    "overlap": result.overlap, "registration_offset_mm": offset, "warnings": warnings,
                    "summary": result.summary(), "device": result.device}
        outputs = staged.commit(manifest)
    finally:
        staged.discard()
    return CaseRecord(id=spec.id, status=OK, method=spec.method, seconds=seconds, overlap=result.overlap,
                      registration_offset_mm=offset, warnings=warnings,
                      outputs={key: str(path) for key, path in outputs.items()}, settings_hash=digest)


def run_case(spec: CaseSpec, out_dir: str, digest: str, threads: Optional[int] = None) -> CaseRecord:
    """Fuse one case into ``out_dir/<id>/``; every failure of the case itself is returned, not raised."""
    started = time.perf_counter()
    case_dir = Path(out_dir) / spec.id
    case_dir.mkdir(parents=True, exist_ok=True)
    with case_log(case_dir) as log:
        log.line(f"case {spec.id} on {socket.gethostname()} pid {os.getpid()}: {spec.a} + {spec.b}, settings "
                 f"{spec.fusion_settings()}, hash {digest[:12]}, threads {threads or 'default'}")
        try:
            if spec.error:
                raise _RowError(spec.error)
            log.line(limit_threads(threads))
            record = _fuse_and_write(spec, case_dir, digest, log, started)
            log.line(f"ok in {record.seconds:.2f} s")
        except MedFusionError as error:
            log.line(f"failed: {error}")
            record = CaseRecord(id=spec.id, status=FAILED, method=spec.method, error=str(error),
                                seconds=time.perf_counter() - started, settings_hash=digest)
        except Exception as error:  # a bug or a resource failure: still only this case fails
            log.line(f"failed unexpectedly:\n{traceback.format_exc()}")
            record = CaseRecord(id=spec.id, status=FAILED, method=spec.method,
                                error=f"Unexpected {type(error).__name__} ({error}); see the case log.",
                                seconds=time.perf_counter() - started, settings_hash=digest)
    record.log = str(case_dir / LOG_NAME)
    return record


class _RowError(MedFusionError):
    """The cohort row's settings were rejected when the cohort was read."""
