"""The cohort file: one CSV row per case, read and checked into ``CaseSpec`` objects before anything runs.

Columns (header names are case-insensitive; ``-`` and ``_`` are the same):

* ``id`` (required): names the case's output folder ``DIR/<id>/``; letters, digits, ``.``, ``_`` and ``-``;
  unique (also ignoring case, since some file systems do).
* ``a``, ``b`` (required): the reference volume and the volume fused into its geometry (a file or a DICOM
  folder). Relative paths are relative to the CSV file's folder.
* optional, each empty cell taking the command line's default: ``method`` (``NAME`` or
  ``NAME[KEY=VALUE,...]``), ``preset_a``, ``preset_b``, ``colormap_a``, ``colormap_b``, ``edges`` and
  ``preview`` (yes/no).

A malformed cohort file (missing or unknown columns, bad or repeated ids, no rows) is one InputError: nothing
runs. A row whose settings are wrong (unknown method or preset, bad yes/no) becomes a failed case carrying
its one-sentence error, and the other cases still run.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..errors import InputError, MedFusionError
from ..methods import DEFAULT_METHOD

REQUIRED = ("id", "a", "b")
OPTIONAL = ("method", "preset_a", "preset_b", "colormap_a", "colormap_b", "edges", "preview")
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")
_YES, _NO = {"yes", "y", "true", "1"}, {"no", "n", "false", "0"}


@dataclass(frozen=True)
class CaseSpec:
    """One case with its effective settings (row values over command-line defaults)."""

    id: str
    a: str = ""  # absolute paths as the client sees them (a cluster needs the same paths on every worker)
    b: str = ""
    method: str = DEFAULT_METHOD
    options: Dict[str, Any] = field(default_factory=dict)
    preset_a: str = "auto"
    preset_b: str = "auto"
    colormap_a: Optional[str] = None
    colormap_b: Optional[str] = None
    edges: bool = False
    preview: bool = False
    axis: str = "axial"
    edge_thresholds: Optional[Tuple[float, float]] = None
    precision: str = "auto"
    device: str = "auto"  # how, not what: device and batch size are not part of the recorded settings
    batch_size: Optional[int] = None
    row: int = 0  # line of the CSV file, for messages
    error: Optional[str] = None  # set when the row cannot run as given

    def engine_settings(self, name_a: str = "A", name_b: str = "B"):
        """The checked FusionSettings of this case (settings.py): InputError, one sentence, if unusable."""
        from ..settings import FusionSettings

        return FusionSettings.create(
            method=self.method, method_options=self.options, preset_a=self.preset_a, preset_b=self.preset_b,
            colormap_a=self.colormap_a, colormap_b=self.colormap_b, edges=self.edges, axis=self.axis,
            edge_thresholds=self.edge_thresholds, precision=self.precision, device=self.device,
            batch_size=self.batch_size, name_a=name_a, name_b=name_b)

    def fusion_settings(self) -> Dict[str, Any]:
        """What determines the outputs (recorded with them, and hashed to decide whether a re-run can skip)."""
        return {"method": self.method, "options": dict(sorted(self.options.items())),
                "preset_a": self.preset_a, "preset_b": self.preset_b, "colormap_a": self.colormap_a,
                "colormap_b": self.colormap_b, "edges": self.edges, "preview": self.preview, "axis": self.axis,
                "edge_thresholds": list(self.edge_thresholds) if self.edge_thresholds else None,
                "precision": self.precision}


def _column(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def _yes_no(text: str, column: str) -> bool:
    word = text.strip().lower()
    if word in _YES:
        return True
    if word in _NO:
        return False
    raise InputError(f"The {column} column must be yes or no, not '{text}'.")


def _resolve(path_text: str, base: Path, column: str) -> str:
    if not path_text.strip():
        raise InputError(f"The {column} column is empty; give the path of volume {column.upper()}.")
    path = Path(path_text.strip()).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def check_settings(spec: CaseSpec) -> CaseSpec:
    """Raise InputError (one sentence) if the method, its options, the presets or colour maps are unusable."""
    from ..colour import colour_table

    spec.engine_settings()
    for colormap in (spec.colormap_a, spec.colormap_b):
        if colormap:
            colour_table(colormap)
    return spec


def _row_spec(row: Dict[str, str], defaults: CaseSpec, base: Path) -> CaseSpec:
    from ..methods import REGISTRY
    from ..methods.registry import parse_method_spec

    spec = replace(defaults, a=_resolve(row["a"], base, "a"), b=_resolve(row["b"], base, "b"))
    if row.get("method", "").strip():
        method, options = parse_method_spec(row["method"], REGISTRY)
        spec = replace(spec, method=method, options=options)
    for column in ("preset_a", "preset_b", "colormap_a", "colormap_b"):
        if row.get(column, "").strip():
            spec = replace(spec, **{column: row[column].strip()})
    for column in ("edges", "preview"):
        if row.get(column, "").strip():
            spec = replace(spec, **{column: _yes_no(row[column], column)})
    return check_settings(spec)


def _read_rows(path: Path) -> Tuple[List[str], List[Tuple[int, Dict[str, str]]]]:
    if not path.is_file():
        raise InputError(f"Cohort file '{path}' does not exist.")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise InputError(f"Cohort file '{path}' is empty; it needs a header line with id, a and b.")
            columns = [_column(name) for name in header]
            rows = []
            for values in reader:
                if not any(v.strip() for v in values):
                    continue  # blank lines are not cases
                if len(values) > len(columns):
                    raise InputError(f"Line {reader.line_num} of '{path}' has {len(values)} values for "
                                     f"{len(columns)} columns.")
                rows.append((reader.line_num, dict(zip(columns, values + [""] * (len(columns) - len(values))))))
    except UnicodeDecodeError:
        raise InputError(f"Cohort file '{path}' is not a UTF-8 text (CSV) file.") from None
    except csv.Error as error:
        raise InputError(f"Cohort file '{path}' is not a valid CSV file ({error}).") from None
    return columns, rows


def _check_columns(columns: List[str], path: Path) -> None:
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise InputError(f"Cohort file '{path}' lacks the column(s) {', '.join(missing)}; its header must name "
                         f"at least id, a and b.")
    unknown = [c for c in columns if c not in REQUIRED + OPTIONAL]
    if unknown:
        raise InputError(f"Cohort file '{path}' has unknown column(s) {', '.join(map(repr, unknown))}; known "
                         f"columns are {', '.join(REQUIRED + OPTIONAL)}.")
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise InputError(f"Cohort file '{path}' names the column(s) {', '.join(repeated)} more than once.")


def _check_ids(rows: List[Tuple[int, Dict[str, str]]], path: Path) -> None:
    seen: Dict[str, int] = {}
    for line, row in rows:
        case_id = row["id"].strip()
        if not _SAFE_ID.match(case_id):
            raise InputError(f"Line {line} of '{path}' has the case id '{case_id}'; ids name output folders, so "
                             f"use 1-128 letters, digits, '.', '_' or '-', not starting with '.'.")
        if case_id.lower() in seen:
            raise InputError(f"Case id '{case_id}' appears on lines {seen[case_id.lower()]} and {line} of "
                             f"'{path}'; ids name output folders and must be unique.")
        seen[case_id.lower()] = line


def read_cohort(path, defaults: CaseSpec) -> List[CaseSpec]:
    """Every case of the cohort file, in file order; rows with bad settings carry ``error``."""
    path = Path(path)
    columns, rows = _read_rows(path)
    _check_columns(columns, path)
    if not rows:
        raise InputError(f"Cohort file '{path}' lists no cases.")
    _check_ids(rows, path)
    base = path.resolve().parent
    specs = []
    for line, row in rows:
        case_id = row["id"].strip()
        try:
            specs.append(replace(_row_spec(row, defaults, base), id=case_id, row=line))
        except MedFusionError as error:
            specs.append(replace(defaults, id=case_id, row=line, error=str(error)))
    return specs
