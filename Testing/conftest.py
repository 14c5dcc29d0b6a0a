"""Shared fixtures: the shared data folder (never copied into the repo) and small real inputs."""
from __future__ import annotations

import os

from MedFusionLib.openmp import let_idle_threads_sleep

let_idle_threads_sleep()  # as in the CLI, before torch loads OpenMP

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
HARVARD = SHARED_DATA / "harvard"
VOLUMES = SHARED_DATA / "volumes"


def require_shared(path: Path) -> Path:
    """Return ``path``; without it, skip locally but FAIL in CI (CI must see the real data)."""
    if not path.exists():
        message = f"shared data missing: {path}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return require_shared(SHARED_DATA)


@pytest.fixture(scope="session")
def sts_dir() -> Path:
    return require_shared(VOLUMES / "sts_001")


@pytest.fixture(scope="session")
def stroke_dir() -> Path:
    return require_shared(VOLUMES / "stroke_T1_T2_FLAIR")


@pytest.fixture(scope="session")
def harvard_dir() -> Path:
    return require_shared(HARVARD)


def harvard_pair(folder: str, name: str):
    """(A, B) float32 [0, 1] arrays of one Harvard pair; a colour source is reduced to its BT.601 luma."""
    import cv2

    from MedFusionLib.colour import luminance

    root = require_shared(HARVARD / folder)
    first, second = folder.split("-")
    images = []
    for modality in (first, second):
        bgr = cv2.imread(str(root / modality / name), cv2.IMREAD_UNCHANGED)
        if bgr is None:
            pytest.fail(f"cannot read {root / modality / name}")
        array = bgr.astype(np.float32) / 255.0
        if array.ndim == 3:
            array = luminance(array[..., ::-1])
        images.append(array)
    return images[0], images[1]


def validation_pairs(root, per_folder: int = 3):
    """A few held-out pairs per folder (data_split's validation cases), spread over the case, end slices skipped."""
    from MedFusionLib import data_split

    pairs = data_split.list_pairs(root, "val")
    chosen = {}
    for folder in data_split.FOLDERS:
        of_folder = [p for p in pairs if p.folder == folder]
        idx = np.linspace(0, len(of_folder) - 1, per_folder + 2).round().astype(int)[1:-1]
        chosen[folder] = [of_folder[i] for i in idx]
    return chosen
