"""Checks every shipped network's tests share: it loads with no network connection; a corrupted or missing weights
file is a WeightsError."""
from __future__ import annotations

import shutil
import socket

import pytest

from MedFusionLib import weights_store
from MedFusionLib.errors import WeightsError
from MedFusionLib.methods import REGISTRY


def refuse_network(monkeypatch, title: str) -> None:
    """Every network connection from here on is an AssertionError naming ``title``."""
    def no_network(*args, **kwargs):
        raise AssertionError(f"{title} tried to open a network connection")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)


def build_offline(monkeypatch, method: str):
    """The registry's ``method`` built on the CPU with every network connection refused (an AssertionError)."""
    refuse_network(monkeypatch, REGISTRY.get(method).title)
    return REGISTRY.get(method).build("cpu")


def assert_manifest_entry(method: str, architecture: str, parameters: int) -> None:
    """``method``'s manifest entry: the shipped file's sha256, the architecture and parameter count of the code,
    trained on the training cases only (the validation cases recorded), by a seeded one-thread recipe."""
    from MedFusionLib import data_split

    entry = weights_store.manifest_entry(method)
    assert entry["sha256"] == weights_store.sha256_file(weights_store.weights_path(method))
    assert entry["architecture"] == architecture
    assert entry["parameters"] == parameters
    assert entry["data"]["validation_cases"] == {k: list(v) for k, v in data_split.VALIDATION_CASES.items()}
    assert entry["recipe"]["command"] and entry["recipe"]["seed"] == 0 and entry["recipe"]["threads"] == 1


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
