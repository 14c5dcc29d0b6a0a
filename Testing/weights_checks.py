"""Checks every shipped network's tests share: a corrupted or missing weights file is a WeightsError."""
from __future__ import annotations

import shutil

import pytest

from MedFusionLib import weights_store
from MedFusionLib.errors import WeightsError


def assert_bad_weights_raise(build, method: str, tmp_path) -> None:
    """``build(device, weights_dir=...)`` on a copy of the weights with ``method``'s file corrupted, then missing."""
    folder = tmp_path / "weights"
    shutil.copytree(weights_store.WEIGHTS_DIR, folder)
    path = folder / f"{method}.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=rf"{method}\.pt.*corrupted"):
        build("cpu", weights_dir=folder)
    path.unlink()
    with pytest.raises(WeightsError, match=rf"{method}\.pt.*missing"):
        build("cpu", weights_dir=folder)
