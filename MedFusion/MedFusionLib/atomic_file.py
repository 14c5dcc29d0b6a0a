"""Replace a file atomically: a reader sees the old file or the complete new one, never a part.

The one atomic write of small files (batch manifests and summaries, the weights manifest, exported weights,
training checkpoints, evaluation reports and figures, previews); fused outputs go through safe_write.py, which
also verifies what it wrote.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path


def write_bytes_atomically(path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique temporary name in the same folder (so the rename is atomic), created with the usual permissions.
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temp, "xb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomically(path, text: str) -> Path:
    return write_bytes_atomically(path, text.encode("utf-8"))


def write_atomically_with(path, write) -> Path:
    """Call ``write(temporary_path)``, then rename that file to ``path``; nothing is left behind on a failure.

    The temporary path is in the same folder and ends as ``path`` does, for writers that choose the format by the
    extension (OpenCV, matplotlib)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.tmp{path.suffix}")
    try:
        write(temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path
