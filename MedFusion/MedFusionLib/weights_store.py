"""Shipped network weights: ``MedFusionLib/weights/<method>.pt`` plus ``weights/manifest.json``.

The manifest has one entry per weights file::

    {"format": 1, "entries": [{"method": "mfenet", "file": "mfenet.pt", "sha256": "...",
       "architecture": "...", "parameters": 220865, "recipe": {...hyper-parameters, seed, command...},
       "data": {...folders, train / validation case ids...}, "validation": {...metric(s)...},
       "date": "...", "torch": "2.13.0", ...}]}

``load_state_dict(method)`` finds the method's entry, checks that the file exists and that its sha256
matches, and loads it with ``torch.load(..., map_location=device, weights_only=True)`` (a plain state dict:
no pickled code runs). Anything wrong raises ``WeightsError`` with one sentence naming the file and what to do.
``weights_dir`` can point elsewhere (tests use a copy in a temporary folder).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

from .atomic_file import write_bytes_atomically
from .errors import WeightsError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
_REEXPORT = "reinstall MedFusion, or re-create the weights with 'python scripts/train.py {method} --recipe cpu --export'"


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _dir(weights_dir) -> Path:
    return Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR


def read_manifest(weights_dir=None) -> dict:
    """The manifest as a dict; an empty one when the file does not exist (a fresh checkout)."""
    path = _dir(weights_dir) / MANIFEST_NAME
    if not path.is_file():
        return {"format": MANIFEST_FORMAT, "entries": []}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(manifest, dict):
            raise TypeError("it is not a JSON object")
        entries = manifest["entries"]
        if not isinstance(entries, list):
            raise TypeError("entries is not a list")
        for entry in entries:
            _check_entry(entry)
    except KeyError as exc:
        raise WeightsError(f"The weights manifest '{path}' is unreadable (it lacks {exc}); reinstall "
                           f"MedFusion.") from None
    except (OSError, ValueError, TypeError) as exc:
        raise WeightsError(f"The weights manifest '{path}' is unreadable ({exc}); reinstall MedFusion.") from None
    return manifest


def _check_entry(entry) -> None:
    """An entry is an object with string 'method', 'file' (a name inside the weights folder) and 'sha256'."""
    if not isinstance(entry, dict):
        raise TypeError(f"an entry is a {type(entry).__name__}, not an object")
    for key in ("method", "file", "sha256"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise TypeError(f"an entry has no text '{key}'")
    name = entry["file"]
    if Path(name).name != name or name in (".", "..") or "\\" in name:
        raise ValueError(f"the file '{name}' of '{entry['method']}' is not a plain name inside the weights folder")


def manifest_entry(method: str, weights_dir=None) -> dict:
    """The manifest entry of ``method``; WeightsError when there is none."""
    for entry in read_manifest(weights_dir)["entries"]:
        if entry.get("method") == method:
            return entry
    path = _dir(weights_dir) / MANIFEST_NAME
    raise WeightsError(f"No trained weights for '{method}' are listed in '{path}'; " + _REEXPORT.format(method=method) + ".")


def weights_path(method: str, weights_dir=None) -> Path:
    return _dir(weights_dir) / manifest_entry(method, weights_dir)["file"]


def load_state_dict(method: str, weights_dir=None) -> dict:
    """The verified state dict of ``method`` on the CPU (see the module docstring); the model moves it."""
    import torch

    entry = manifest_entry(method, weights_dir)
    path = _dir(weights_dir) / entry["file"]
    hint = _REEXPORT.format(method=method)
    if not path.is_file():
        raise WeightsError(f"The {method} weights file '{path}' is missing; {hint}.")
    actual = sha256_file(path)
    if actual != entry.get("sha256"):
        raise WeightsError(f"The {method} weights file '{path}' is corrupted (its sha256 does not match the "
                           f"manifest); {hint}.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise WeightsError(f"The {method} weights file '{path}' cannot be loaded ({type(exc).__name__}); {hint}.") from exc
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise WeightsError(f"The {method} weights file '{path}' does not hold a state dict; {hint}.")
    return state


def write_manifest_entry(entry: dict, weights_dir=None) -> Path:
    """Add or replace (same method or same file) one entry of the manifest; returns the manifest path."""
    for key in ("method", "file", "sha256"):
        if key not in entry:
            raise ValueError(f"A manifest entry needs '{key}'.")
    manifest = read_manifest(weights_dir)
    entries = [e for e in manifest["entries"] if e.get("method") != entry["method"] and e.get("file") != entry["file"]]
    entries.append(entry)
    entries.sort(key=lambda e: e["method"])
    manifest = {"format": MANIFEST_FORMAT, "entries": entries}
    path = _dir(weights_dir) / MANIFEST_NAME
    write_bytes_atomically(path, (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode("utf-8"))
    return path


def export_state_dict(state_dict: dict, method: str, metadata: dict, weights_dir=None, filename: Optional[str] = None) -> dict:
    """Save a plain fp32 state dict as ``<method>.pt`` and record its manifest entry; returns the entry."""
    import io

    import torch

    filename = filename or f"{method}.pt"
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    buffer = io.BytesIO()
    torch.save(plain, buffer)
    path = _dir(weights_dir) / filename
    write_bytes_atomically(path, buffer.getvalue())
    entry = {"method": method, "file": filename, "sha256": sha256_file(path), "bytes": path.stat().st_size}
    entry.update({k: v for k, v in metadata.items() if k not in entry})
    entry.setdefault("torch", torch.__version__.split("+")[0])
    write_manifest_entry(entry, weights_dir)
    return entry
