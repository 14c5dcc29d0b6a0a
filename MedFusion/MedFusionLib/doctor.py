"""``medfusion --version`` and ``medfusion doctor``: what a bug report needs, in lines a user can paste.

``--version`` is one line from the installed packages' metadata (no torch import, so it is instant).
``doctor`` imports each dependency and reports what will really run: library versions, the CPU and the ISA
torch's kernels use (ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA respected), the precision ``auto`` picks for each
network on each visible device, CUDA visibility, and every shipped weights file checked against the manifest's
sha256. A dependency that fails to import is reported, not raised: the doctor must work on a broken install.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
from typing import Callable, List, Optional, Tuple

from . import __version__

# (label, import name, distribution names to try for --version: the first one installed wins)
PACKAGES = (
    ("torch", "torch", ("torch",)),
    ("SimpleITK", "SimpleITK", ("SimpleITK", "simpleitk")),
    ("OpenCV", "cv2", ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless",
                       "opencv-contrib-python")),
    ("numpy", "numpy", ("numpy",)),
    ("PyWavelets", "pywt", ("PyWavelets",)),
)


def _distribution_version(names) -> Optional[str]:
    from importlib import metadata

    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def version_line() -> str:
    """'medfusion 0.1.0 (Python 3.12.3; torch 2.13.0, SimpleITK 2.5.7, ...)' from package metadata."""
    parts = [f"{label} {_distribution_version(dists) or 'not installed'}" for label, _, dists in PACKAGES]
    return f"medfusion {__version__} (Python {platform.python_version()}; {', '.join(parts)})"


class VersionAction(argparse.Action):
    """``--version``: print :func:`version_line` and exit (computed only when asked for)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0,
                         help=help or "print the versions of medfusion, Python and its main libraries, and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_line())
        parser.exit()


def cpu_model() -> str:
    """The CPU model from /proc/cpuinfo where there is one, else what the platform module knows."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return model


def _imported_version(module_name: str) -> str:
    import importlib

    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001 - any import failure is what the user needs to see
        return f"NOT IMPORTABLE ({type(error).__name__}: {error})"
    if module_name == "SimpleITK":
        return module.Version_VersionString()
    return str(getattr(module, "__version__", "unknown version"))


def _cpu_lines() -> List[str]:
    from .acceleration import cpu_capabilities, kernel_isa, native_bf16_blocker

    caps = cpu_capabilities()
    isa = kernel_isa()
    hardware = [flag for flag in ("avx2", "avx512_f", "avx512_bf16", "amx_bf16") if caps.get(flag)]
    blocker = native_bf16_blocker()
    return [f"CPU: {cpu_model()}, {os.cpu_count()} logical core(s); flags {', '.join(hardware) or 'none of AVX2+'}",
            f"torch CPU kernels: ATen {isa['aten']}"
            f"{' (ATEN_CPU_CAPABILITY=' + os.environ['ATEN_CPU_CAPABILITY'] + ')' if 'ATEN_CPU_CAPABILITY' in os.environ else ''}"
            f", oneDNN cap {isa['onednn_max']}; native bf16: {'yes' if blocker is None else 'no (' + blocker + ')'}"]


def _devices() -> Tuple[List[str], list]:
    import torch

    lines = [f"torch threads: {torch.get_num_threads()} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})"]
    devices = [torch.device("cpu")]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible_note = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
    if torch.version.cuda is None:
        lines.append(f"CUDA: this torch build has no CUDA support (a CPU build){visible_note}")
    elif not torch.cuda.is_available():
        lines.append(f"CUDA: torch built for CUDA {torch.version.cuda}, but it sees no GPU{visible_note}")
    else:
        names = ", ".join(f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count()))
        lines.append(f"CUDA {torch.version.cuda}: {torch.cuda.device_count()} GPU(s): {names}{visible_note}")
        devices.append(torch.device("cuda"))
    return lines, devices


def _precision_lines(devices) -> List[str]:
    from .acceleration import plan_precision
    from .methods import REGISTRY

    lines = []
    for device in devices:
        for info in REGISTRY.infos():
            if info.kind == "network":
                plan = plan_precision("auto", device, info.kind, info.reduced_precision)
                lines.append(f"precision auto, {info.name} on {device.type}: {plan.precision} ({plan.reason})")
    default = "cuda" if len(devices) > 1 else "cpu"
    lines.append(f"device auto: {default}; classic methods always run in fp32")
    return lines


def weights_report(weights_dir=None) -> Tuple[List[str], bool]:
    """One line per network's weights (ok / missing / corrupted / not listed) and whether all are ok."""
    from .errors import WeightsError
    from .methods import REGISTRY
    from .weights_store import MANIFEST_NAME, _dir, read_manifest, sha256_file

    folder = _dir(weights_dir)
    try:
        entries = {e.get("method"): e for e in read_manifest(weights_dir)["entries"]}
    except WeightsError as error:
        return [f"weights: {error}"], False
    lines, healthy = [f"weights: {folder / MANIFEST_NAME}"], True
    for info in REGISTRY.infos():
        if info.kind != "network":
            continue
        entry = entries.get(info.name)
        if entry is None:
            lines.append(f"  {info.name:<11} NOT LISTED in the manifest")
            healthy = False
            continue
        path = folder / entry["file"]
        if not path.is_file():
            status, healthy = "MISSING", False
        elif sha256_file(path) != entry.get("sha256"):
            status, healthy = "CORRUPTED (sha256 differs from the manifest)", False
        else:
            status = f"ok (sha256 {entry['sha256'][:12]}..., {path.stat().st_size / 1e6:.1f} MB)"
        lines.append(f"  {info.name:<11} {entry['file']:<15} {status}")
    return lines, healthy


def report(weights_dir=None) -> Tuple[List[str], bool]:
    """Every line of ``medfusion doctor`` and whether everything checked is healthy."""
    lines = [f"medfusion {__version__} at {os.path.dirname(os.path.abspath(__file__))}",
             f"Python {platform.python_version()} ({platform.python_implementation()}, {sys.executable}) on "
             f"{platform.platform()}"]
    versions = [(label, _imported_version(module)) for label, module, _ in PACKAGES]
    lines.append(", ".join(f"{label} {version}" for label, version in versions))
    healthy = not any(version.startswith("NOT IMPORTABLE") for _, version in versions)
    if not dict(versions)["torch"].startswith("NOT IMPORTABLE"):
        device_lines, devices = _devices()
        lines += _cpu_lines() + device_lines + _precision_lines(devices)
    weight_lines, weights_ok = weights_report(weights_dir)
    return lines + weight_lines, healthy and weights_ok


def run(say: Callable[[str], None] = print, weights_dir=None) -> int:
    """Print the report; exit status 0 when healthy, 1 when a dependency or a weights file is broken."""
    lines, healthy = report(weights_dir)
    for line in lines:
        say(line)
    say("medfusion doctor: all checks passed" if healthy else
        "medfusion doctor: PROBLEMS found above (reinstall MedFusion, or the package named)")
    return 0 if healthy else 1
