"""What MedFusion needs from the Slicer it runs in: the supported versions and the Python packages (no Qt).

The module file (MedFusion.py) asks this module what to check and what to install; the decisions themselves live
here so that pytest can test them without Slicer.

Slicer versions
    :data:`SLICER_RELEASES` records, per release line, what MedFusion depends on (read from Slicer's source at each
    release tag). The module uses ``slicer.i18n`` and ``slicer.parameterNodeWrapper``, so the first release with
    both is the minimum: :func:`minimum_slicer` = 5.4. Before 5.10 ``connectGui`` returns no tag (so its bindings
    can never be disconnected); ``connectParametersToGui`` returns one on every supported release, so the widget
    binds through it.

Packages
    torch comes from the PyTorch extension (``PyTorchUtils.installTorch``, which picks the CUDA build); the other
    packages are the lines of ``Resources/requirements.txt`` (``name>=minimum  # import module``). A package counts
    as present when its module imports and its ``__version__`` reaches the minimum: an existing opencv-python (or
    contrib) satisfies ``cv2`` and no second, clashing OpenCV is installed. Slicer's numpy is never changed: pip gets
    a constraint ``numpy==<installed>``, and with numpy 1.x (Slicer 5.4-5.8) OpenCV is capped below 4.12, the first
    release that needs numpy 2.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

Version = Tuple[int, ...]

TORCH_MINIMUM = "2.0"  # torch.compile, torch.load(weights_only=True), torch.cuda.OutOfMemoryError
REQUIREMENTS_FILE = Path(__file__).resolve().parents[1] / "Resources" / "requirements.txt"
# Upper bounds for a Slicer whose numpy is 1.x: the first release of each package that needs numpy 2.
NUMPY2_ONLY_FROM = {"opencv-python-headless": "4.12"}


@dataclass(frozen=True)
class SlicerRelease:
    version: Version  # major, minor of the release line
    python: str
    numpy: str
    has_i18n: bool  # slicer.i18n (tr, translate)
    has_parameter_node_wrapper: bool
    has_pip_ensure: bool  # slicer.packaging.pip_ensure
    connect_gui_returns_tag: bool


SLICER_RELEASES: Tuple[SlicerRelease, ...] = (
    SlicerRelease((5, 0), "3.9", "1.x", False, False, False, False),
    SlicerRelease((5, 2), "3.9", "1.x", False, False, False, False),
    SlicerRelease((5, 4), "3.9", "1.x", True, True, False, False),
    SlicerRelease((5, 6), "3.9", "1.26", True, True, False, False),
    SlicerRelease((5, 8), "3.9", "1.26", True, True, False, False),
    SlicerRelease((5, 10), "3.12", "2.0", True, True, False, True),
    SlicerRelease((5, 12), "3.12", "2.4", True, True, True, True),
    SlicerRelease((5, 13), "3.12", "2.4", True, True, True, True),  # preview
)


def supports(release: SlicerRelease) -> bool:
    """Whether MedFusion's module file can run on this release (it imports both modules at load time)."""
    return release.has_i18n and release.has_parameter_node_wrapper and parse_version(release.python) >= (3, 9)


def minimum_slicer() -> Version:
    return min(r.version for r in SLICER_RELEASES if supports(r))


def version_text(version: Sequence[int]) -> str:
    return ".".join(str(v) for v in version)


def parse_version(text) -> Version:
    """The leading numeric release of a version string: '4.11.0.86' -> (4, 11, 0, 86), '2.13.0+cpu' -> (2, 13, 0),
    '2.0.0rc1' -> (2, 0, 0); anything unparsable -> ()."""
    numbers = []
    for part in str(text).strip().split("+")[0].split("."):
        match = re.match(r"\d+", part)
        if not match:
            break
        numbers.append(int(match.group()))
        if match.end() != len(part):  # a pre-release tag ends the release part
            break
    return tuple(numbers)


def unsupported_slicer_message(version: Sequence[int]) -> Optional[str]:
    """One sentence when ``version`` (major, minor[, patch]) is older than the minimum; None when supported."""
    if tuple(version[:2]) >= minimum_slicer():
        return None
    return (f"MedFusion needs 3D Slicer {version_text(minimum_slicer())} or later; this is Slicer "
            f"{version_text(version)}.")


# ---------------------------------------------------------------------------------------------- packages -----

@dataclass(frozen=True)
class Requirement:
    """One package: its pip name, the module it provides, and the minimum version MedFusion needs."""
    pip_name: str
    import_name: str
    minimum: str

    def pip_spec(self, numpy_version: Optional[str] = None) -> str:
        """The pip requirement string, capped where the package's newer releases need numpy 2 and numpy is 1.x."""
        spec = f"{self.pip_name}>={self.minimum}"
        cap = NUMPY2_ONLY_FROM.get(self.pip_name.lower())
        if cap and numpy_version is not None and parse_version(numpy_version)[:1] < (2,):
            spec += f",<{cap}"
        return spec


def load_requirements(path: Path = REQUIREMENTS_FILE) -> List[Requirement]:
    """The lines of requirements.txt: ``pip-name>=minimum  # import module``."""
    requirements = []
    for number, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        text, _, comment = raw.partition("#")
        text = text.strip()
        if not text:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*>=\s*([0-9][0-9.]*)", text)
        imported = re.search(r"\bimport\s+([A-Za-z_][A-Za-z0-9_]*)", comment)
        if not match or not imported:
            raise ValueError(f"{path}:{number}: write requirements as 'name>=version  # import module'.")
        requirements.append(Requirement(match.group(1), imported.group(1), match.group(2)))
    return requirements


def torch_requirement() -> Requirement:
    return Requirement("torch", "torch", TORCH_MINIMUM)


# Modules too heavy to import into Slicer's own process just to read a version (torch runs in the worker):
# found on the path, versioned by their installed distribution.
_FOUND_NOT_IMPORTED = {"torch": "torch"}


def installed_version(import_name: str) -> Optional[str]:
    """The version of an importable module ('' when it has none), or None when it does not import."""
    import importlib

    if import_name in _FOUND_NOT_IMPORTED:
        import importlib.metadata
        import importlib.util

        try:
            if importlib.util.find_spec(import_name) is None:
                return None
            return importlib.metadata.version(_FOUND_NOT_IMPORTED[import_name])
        except (ImportError, ValueError, importlib.metadata.PackageNotFoundError):
            return None
    try:
        module = importlib.import_module(import_name)
    except Exception:  # ImportError, or a broken install that fails while importing
        return None
    return str(getattr(module, "__version__", ""))


@dataclass(frozen=True)
class Problem:
    requirement: Requirement
    installed: Optional[str]  # None: does not import

    def describe(self) -> str:
        name = f"{self.requirement.pip_name} {self.requirement.minimum} or later"
        return f"{name} (not installed)" if self.installed is None else f"{name} (found {self.installed})"


def check(requirements: Sequence[Requirement],
          version_of: Callable[[str], Optional[str]] = installed_version) -> List[Problem]:
    """The requirements whose module does not import, or imports at a version below the minimum."""
    problems = []
    for requirement in requirements:
        installed = version_of(requirement.import_name)
        if installed is None or (installed and parse_version(installed) < parse_version(requirement.minimum)):
            problems.append(Problem(requirement, installed))
    return problems


def pip_arguments(problems: Sequence[Problem], numpy_version: str, constraints_path: str) -> List[str]:
    """Arguments after ``pip install`` for the packages to install or upgrade, with numpy held where it is."""
    return ["-c", str(constraints_path)] + [p.requirement.pip_spec(numpy_version) for p in problems]


def numpy_constraint(numpy_version: str) -> str:
    """The constraints-file text that keeps Slicer's numpy exactly as installed."""
    return f"numpy=={numpy_version}\n"


def self_test_missing(version_of: Callable[[str], Optional[str]] = installed_version) -> Optional[str]:
    """Why the self-test cannot run here (one sentence), or None when every package it needs is present."""
    problems = check([torch_requirement()] + load_requirements(), version_of)
    if not problems:
        return None
    return ("MedFusionTest skipped: it needs " + ", ".join(p.describe() for p in problems)
            + "; click Apply in the MedFusion module once to install them.")
