"""Checks every shipped network's tests share: it loads with no network connection; a corrupted or missing weights
file is a WeightsError."""
from __future__ import annotations

import shutil
import socket

import pytest

from MedFusionLib import weights_store
from MedFusionLib.errors import WeightsError
from MedFusionLib.methods import REGISTRY


def build_offline(monkeypatch, method: str):
    """The registry's ``method`` built on the CPU with every network connection refused (an AssertionError)."""
    title = REGISTRY.get(method).title

    def no_network(*args, **kwargs):
        raise AssertionError(f"{title} tried to open a network connection")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    return REGISTRY.get(method).build("cpu")


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
