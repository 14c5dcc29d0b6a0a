"""How a network runs fast on the chosen device: numeric precision, memory format and torch.compile.

Precision policy (``precision="auto"``, the default everywhere):

* CUDA: float16 autocast for the networks that pass the accuracy guard in that precision.
* CPU with native bfloat16 (AMX or AVX-512 BF16, detected at run time from torch's CPU capabilities, never
  assumed): bfloat16 autocast for the networks that pass the guard in bfloat16.
* Any other CPU (e.g. AVX2 only, like the development machine): float32. Without native bf16 instructions
  torch emulates bf16 arithmetic and it runs slower than float32, not faster.

The accuracy guard: a network lists a reduced precision in ``MethodInfo.reduced_precision`` only if its fused
output stays within ``GUARD_PSNR_DB`` of the float32 fusion on real validation pairs; Testing/test_acceleration.py
checks every listed (network, precision) on the CPU. Classic methods always run in float32 (their filters and
pyramids gain nothing from autocast). ``fp32`` / ``bf16`` / ``fp16`` force a precision for networks.

Channels-last memory format is applied to every network's weights and inputs: on the development CPU it made
MFEnet's convolutions faster (see scripts/benchmark.py), and it is what CUDA tensor cores and oneDNN prefer.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional

from .errors import InputError

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
GUARD_PSNR_DB = 45.0  # reduced precision must stay at least this close to float32 (PSNR on [0, 1] images)


def cpu_capabilities() -> dict:
    import torch

    try:
        return dict(torch.cpu.get_capabilities())
    except (AttributeError, RuntimeError):  # older torch: no capability report, assume nothing
        return {}


def cpu_has_native_bf16() -> bool:
    """True where the CPU executes bf16 matrix maths natively (AMX-BF16 or AVX-512 BF16)."""
    caps = cpu_capabilities()
    return bool(caps.get("amx_bf16") or caps.get("avx512_bf16"))


def _dtype(name: str):
    import torch

    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


@dataclass(frozen=True)
class Plan:
    precision: str  # "fp32", "bf16" or "fp16": what actually runs
    reason: str  # one line: why this precision was chosen

    @property
    def dtype(self):
        return _dtype(self.precision)


def plan_precision(precision: str, device, kind: str, allowed=()) -> Plan:
    """Choose the precision a method runs in on ``device`` (see the module docstring)."""
    key = (precision or "auto").strip().lower()
    if key not in PRECISIONS:
        raise InputError(f"Unknown precision '{precision}'; choose one of: {', '.join(PRECISIONS)}.")
    if kind != "network":
        return Plan("fp32", "classic methods run in float32")
    if key != "auto":
        if key == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
            return Plan("bf16", "bf16 requested; this CPU has no native bf16 (emulated, expect it to be slower)")
        return Plan(key, f"{key} requested")
    if device.type == "cuda":
        if "fp16" in allowed:
            return Plan("fp16", "auto: float16 on CUDA (within the accuracy guard for this method)")
        return Plan("fp32", "auto: float32 (float16 is outside the accuracy guard for this method)")
    if not cpu_has_native_bf16():
        return Plan("fp32", "auto: float32 (this CPU has no native bf16: no AMX / AVX-512 BF16)")
    if "bf16" in allowed:
        return Plan("bf16", "auto: bfloat16 (native on this CPU, within the accuracy guard for this method)")
    return Plan("fp32", "auto: float32 (bfloat16 is outside the accuracy guard for this method)")


def accelerate(fuse: Callable, plan: Plan, device, compile: bool = False) -> Callable:
    """Wrap a network's ``fuse(a, b)``: channels-last inputs and weights, autocast to ``plan``, float32 out.

    ``compile=True`` tries torch.compile; if compiling or a compiled call fails (no C++ compiler, an
    unsupported operator), it falls back to the eager function silently (logged at debug level) for good.
    """
    import torch

    model = getattr(fuse, "model", None)
    if model is not None:
        model.to(memory_format=torch.channels_last)
    dtype = plan.dtype
    state = {"fn": _try_compile(fuse) if compile else fuse}

    def run(a, b):
        a = a.contiguous(memory_format=torch.channels_last)
        b = b.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None):
            try:
                out = state["fn"](a, b)
            except Exception as error:  # compilation happens, and fails, on the first call
                if state["fn"] is fuse:
                    raise
                log.debug("torch.compile failed (%s); running eagerly", error)
                state["fn"] = fuse
                out = fuse(a, b)
        return out.float().contiguous()

    run.model = model
    run.plan = plan
    return run


def _try_compile(fuse: Callable) -> Callable:
    """torch.compile of the whole fuse function (graph breaks where it leaves torch, e.g. OpenCV's Canny)."""
    import torch

    if not hasattr(torch, "compile"):
        return fuse
    try:
        return torch.compile(fuse, dynamic=False)
    except Exception as error:  # e.g. an unsupported platform
        log.debug("torch.compile unavailable (%s)", error)
        return fuse
