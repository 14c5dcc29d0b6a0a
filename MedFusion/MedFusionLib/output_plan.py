"""One place that decides whether a set of output paths may be written: before any work, every output is checked
against every input, against the other outputs, and against the formats its kind of data may use.

An output "touches" a file when it would create or replace it: its own path, plus the data file a two-file
format writes beside its header (``.mhd`` -> ``.zraw``/``.raw``, ``.nhdr`` -> ``.raw.gz``/``.raw``). An input
consists of its header and detached data file, or of everything in its DICOM folder. No output may touch an
input, two outputs may not touch the same file, and a labelmap is written only to lossless formats.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

from .errors import InputError
from .input_integrity import file_kind, volume_files

VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
LOSSY_SUFFIXES = (".jpg", ".jpeg")
# What each kind of output is called in messages, and the formats it may use (None: depends on the dimension).
ROLES = {"fused": "fused output", "edges": "edge labelmap", "preview": "preview", "volume": "output",
         "input copy": "output"}


def suffix_of(path) -> str:
    name = Path(path).name.lower()
    for double in (".nii.gz", ".raw.gz"):
        if name.endswith(double):
            return double
    return Path(name).suffix


def allowed_suffixes(role: str, dimension: int) -> Tuple[str, ...]:
    """Formats an output of ``role`` may use: previews are PNG; labelmaps never go to a lossy format."""
    if role == "preview":
        return (".png",)
    if dimension != 2:
        return VOLUME_SUFFIXES
    images = tuple(s for s in IMAGE_SUFFIXES if role != "edges" or s not in LOSSY_SUFFIXES)
    return VOLUME_SUFFIXES + images


def data_file_of(path, compress: bool = True) -> Optional[Path]:
    """The data file ITK writes beside a two-file header (``.mhd``, ``.nhdr``), else None."""
    p = Path(path)
    suffix = suffix_of(p)
    stem = p.name[: -len(suffix)]
    if suffix == ".mhd":
        return p.with_name(stem + (".zraw" if compress else ".raw"))
    if suffix == ".nhdr":
        return p.with_name(stem + (".raw.gz" if compress else ".raw"))
    return None


@dataclass(frozen=True)
class PlannedOutput:
    role: str
    path: Path  # where the user asked for it
    target: Path  # where it is written: the path with symbolic links resolved
    files: Tuple[Path, ...]  # every file it creates or replaces (target first)
    compress: bool = True

    @property
    def label(self) -> str:
        return f"{ROLES.get(self.role, 'output')} '{self.path}'"


def _key(path: Path) -> str:
    return os.path.normcase(os.path.realpath(path))


def _same(a: Path, b: Path) -> bool:
    try:
        if os.path.samefile(a, b):  # hard links and symbolic links to one file
            return True
    except OSError:
        pass
    return _key(a) == _key(b)


def _input_files(path) -> Tuple[List[Path], Optional[Path]]:
    """(files of the input, its folder if it is a DICOM folder)."""
    p = Path(path)
    if p.is_dir():
        return [], p
    return volume_files(p), None


def _check_writable(planned: PlannedOutput, dimension: int) -> None:
    p, role = planned.path, planned.role
    suffix = suffix_of(p)
    allowed = allowed_suffixes(role, dimension)
    if suffix not in allowed:
        if role == "edges" and suffix in LOSSY_SUFFIXES:
            raise InputError(f"The edge labelmap cannot be written to '{p}': JPEG is lossy and would change its "
                             f"labels; use one of: {', '.join(allowed)}.")
        what = "a preview" if role == "preview" else ("a 3D volume" if dimension != 2 else "a 2D image")
        raise InputError(f"Cannot write {what} to '{p}'; use one of: {', '.join(allowed)}.")
    for file in planned.files:
        kind = file_kind(file)
        if kind == "folder":
            raise InputError(f"Output path '{file}' is a folder; give a file name.")
        if kind not in ("missing", "file"):
            raise InputError(f"Output path '{file}' is a {kind}; MedFusion writes only regular files.")
    parent = planned.target.parent
    if not parent.is_dir():
        raise InputError(f"Output folder '{Path(p).parent}' does not exist.")
    if not _can_create_file_in(parent) or any(f.exists() and not os.access(f, os.W_OK) for f in planned.files):
        raise InputError(f"Output path '{p}' is not writable.")


def _can_create_file_in(folder: Path) -> bool:
    # A real probe: os.access says yes to root even where the file system or a security module says no.
    import tempfile

    from .held_signals import SignalHold

    with SignalHold():  # a Ctrl-C between creating and removing the probe would leave it behind
        try:
            handle, probe = tempfile.mkstemp(prefix=".medfusion-probe-", dir=folder)
            os.close(handle)
            os.unlink(probe)
        except OSError:
            return False
    return True


def plan_output(role: str, path, dimension: int, compress: bool = True) -> PlannedOutput:
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise InputError(f"The {ROLES.get(role, 'output')} path must be a file name, not {path!r}.")
    p = Path(path)
    target = Path(os.path.realpath(p))
    data = data_file_of(target, compress)
    planned = PlannedOutput(role, p, target, (target,) + ((data,) if data is not None else ()), compress)
    _check_writable(planned, dimension)
    return planned


def plan_outputs(outputs: Iterable[Tuple[str, object]], inputs: Sequence = (), dimension: int = 3,
                 compress: bool = True) -> List[PlannedOutput]:
    """Validate ``(role, path)`` outputs (None paths are skipped) against ``inputs`` and each other."""
    planned = [plan_output(role, path, dimension, compress) for role, path in outputs if path is not None]
    input_files = []
    for source in inputs:
        files, folder = _input_files(source)
        input_files.append((source, files, folder))
    for out in planned:
        for file in out.files:
            for source, files, folder in input_files:
                if any(_same(file, f) for f in files):
                    raise InputError(f"The {out.label} would overwrite the input '{source}'; choose another "
                                     f"file name: MedFusion never changes an input.")
                if folder is not None and _key(file.parent) == _key(folder):
                    raise InputError(f"The {out.label} lies inside the input DICOM folder '{source}'; write it "
                                     f"elsewhere, so that the series stays as it is.")
    for i, first in enumerate(planned):
        for second in planned[i + 1:]:
            if any(_same(f, g) for f in first.files for g in second.files):
                raise InputError(f"The {first.label} and the {second.label} would write the same file; give them "
                                 f"different names.")
    return planned
