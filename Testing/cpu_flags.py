"""What the tests cross-check torch's CPU detection against: the kernel's /proc/cpuinfo flags and the ISA caps in
the environment."""
import os
from pathlib import Path


def cpuinfo_flags() -> set:
    """The first CPU's flags (empty where there is no /proc/cpuinfo)."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    line = next((l for l in text.splitlines() if l.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def kernels_uncapped() -> bool:
    """No ATEN_CPU_CAPABILITY below AVX-512 and no oneDNN ISA cap in this process's environment."""
    return os.environ.get("ATEN_CPU_CAPABILITY", "avx512").lower() == "avx512" and not (
        os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA"))
