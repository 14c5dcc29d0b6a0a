"""Shared pytest fixtures: where the shared (never copied into the repo) data lives."""
import os
from pathlib import Path

import pytest

# <repo root>/../shared/data: the repo root is Testing/.., and the shared folder sits beside it.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def require_data(path: Path) -> Path:
    """Return ``path``; if it is missing, fail under CI (CI=true) and skip elsewhere."""
    if not path.exists():
        message = f"shared data not found at {path}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return require_data(SHARED_DATA)
