"""One record per case, and DIR/summary.csv listing every case of the cohort in file order."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from ..atomic_file import write_text_atomically

OK, SKIPPED, FAILED, NOT_RUN = "ok", "skipped", "failed", "not run"
COLUMNS = ("id", "status", "seconds", "overlap", "registration_offset_mm", "warnings", "error",
           "fused", "edges", "preview", "log", "method", "settings_hash")


@dataclass
class CaseRecord:
    id: str
    status: str
    method: str = ""
    seconds: Optional[float] = None  # wall time on the worker: reading, fusing, writing and verifying
    overlap: Optional[float] = None  # fraction of A's voxels inside B's field of view
    registration_offset_mm: Optional[float] = None  # the engine's registration check, where it reports one
    warnings: List[str] = field(default_factory=list)
    error: str = ""  # one sentence when the case failed
    outputs: Dict[str, str] = field(default_factory=dict)  # fused / edges / preview -> path
    log: str = ""
    settings_hash: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status in (OK, SKIPPED)

    def row(self) -> Dict[str, str]:
        def number(value, digits):
            return "" if value is None else f"{value:.{digits}f}"

        return {"id": self.id, "status": self.status, "seconds": number(self.seconds, 2),
                "overlap": number(self.overlap, 4), "registration_offset_mm": number(self.registration_offset_mm, 2),
                "warnings": " | ".join(self.warnings), "error": self.error,
                "fused": self.outputs.get("fused", ""), "edges": self.outputs.get("edges", ""),
                "preview": self.outputs.get("preview", ""), "log": self.log, "method": self.method,
                "settings_hash": self.settings_hash}


def write_summary(path: Path, records: List[CaseRecord]) -> Path:
    """Write the summary atomically; paths inside the summary's folder are written relative to it."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS)
    writer.writeheader()
    folder = path.resolve().parent
    for record in records:
        row = record.row()
        for column in ("fused", "edges", "preview", "log"):
            if row[column] and Path(row[column]).resolve().is_relative_to(folder):
                row[column] = str(Path(row[column]).resolve().relative_to(folder))
        writer.writerow(row)
    return write_text_atomically(path, text.getvalue())
