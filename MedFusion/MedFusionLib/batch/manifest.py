"""What a finished case records (DIR/<id>/case.json) and the check that lets a re-run skip it.

A case is up to date when its manifest holds the same settings hash (the fusion settings, the MedFusion version
and the identity of both inputs: path, size, modification time) and every output it lists still exists with the
recorded size and sha256. Device, batch size and worker count are not part of the hash: they change how fast a
case runs, not what it produces.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Dict, Optional

from .. import __version__
from ..atomic_file import write_text_atomically
from .cohort import CaseSpec

MANIFEST = "case.json"


def input_identity(path: str) -> Dict[str, Any]:
    """Path, size and modification time of a file, or of every file directly inside a (DICOM) folder."""
    p = Path(path)
    if p.is_file():
        stat = p.stat()
        return {"path": str(p), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if p.is_dir():
        listing = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in p.iterdir() if f.is_file())
        return {"path": str(p), "files": hashlib.sha256(json.dumps(listing).encode()).hexdigest()}
    return {"path": str(p), "missing": True}


def settings_hash(spec: CaseSpec) -> str:
    recorded = {"version": __version__, "settings": spec.fusion_settings(),
                "a": input_identity(spec.a), "b": input_identity(spec.b)}
    return hashlib.sha256(json.dumps(recorded, sort_keys=True).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(case_dir: Path) -> Optional[Dict[str, Any]]:
    try:
        manifest = json.loads((case_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def up_to_date(case_dir: Path, digest: str) -> Optional[Dict[str, Any]]:
    """The case's manifest when its outputs exist and match ``digest``; None when the case must run."""
    manifest = read_manifest(case_dir)
    if not manifest or manifest.get("settings_hash") != digest:
        return None
    for entry in manifest.get("outputs", {}).values():
        path = case_dir / entry["file"]
        if not path.is_file() or path.stat().st_size != entry["size"] or file_sha256(path) != entry["sha256"]:
            return None
    return manifest


def write_manifest(case_dir: Path, manifest: Dict[str, Any]) -> Path:
    return write_text_atomically(case_dir / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
