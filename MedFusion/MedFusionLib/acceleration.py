"""How a network runs fast on the chosen device: numeric precision, memory format and torch.compile.

Precision policy (``precision="auto"``, the default everywhere):

* CUDA: float16 autocast for the networks that pass the accuracy guard in that precision.
* CPU with native bfloat16 (AMX or AVX-512 BF16, detected at run time from torch's CPU capabilities, never
  assumed, and not capped below AVX-512 BF16 by ATEN_CPU_CAPABILITY or ONEDNN_MAX_CPU_ISA): bfloat16 autocast
  for the networks that pass the guard in bfloat16.
* Any other CPU (e.g. AVX2 only, like the development machine): float32. Without native bf16 instructions
  torch emulates bf16 arithmetic and it runs slower than float32, not faster.
* On any CPU, int8 comes first for the networks that list it (MFEnet: int8_encoder.py, int8_decoder.py): oneDNN's
  int8 kernels run natively on AVX2 and on AVX-512 (VNNI), and with the calibration ranges shipped (no
  calibration run per process) int8 measured faster than bf16 on the native-bf16 class too, in all four
  whole-process runs of README "Performance" (volume and sts_001, cropped and not); before, calibrating on
  every run made it slightly slower there, and bf16 had precedence. The exception (measured on a later
  machine) is a CPU whose bf16 convolutions run on AMX tiles (AMX-BF16, oneDNN not capped below AMX): there
  bf16 measured faster than the int8 encoder, so ``auto`` takes bf16 (README "Performance").

The accuracy guard: a network lists a reduced precision in ``MethodInfo.reduced_precision`` only if its fused
output stays within ``GUARD_PSNR_DB`` of the float32 fusion on real validation pairs; Testing/test_acceleration.py
checks every listed (network, precision) on the CPU. Classic methods always run in float32 (their filters and
pyramids gain nothing from autocast). ``fp32`` / ``bf16`` / ``fp16`` force a precision for networks.

Channels-last memory format is applied to every network's weights and inputs: on the development CPU it made
MFEnet's convolutions faster (see scripts/benchmark.py), and it is what CUDA tensor cores and oneDNN prefer.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable, Optional

from .errors import InputError

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
GUARD_PSNR_DB = 45.0  # reduced precision must stay at least this close to float32 (PSNR on [0, 1] images)


def cpu_capabilities() -> dict:
    import torch

    try:
        return dict(torch.cpu.get_capabilities())
    except (AttributeError, RuntimeError):  # older torch: no capability report, assume nothing
        return {}


# oneDNN ISA levels (ONEDNN_MAX_CPU_ISA) at which its kernels run bf16 natively; ALL / DEFAULT mean "no cap".
_ONEDNN_BF16_ISAS = {"AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX10_1_512_AMX",
                     "AVX512_CORE_AMX_FP16", "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2", "ALL",
                     "DEFAULT"}


def kernel_isa() -> dict:
    """What torch's CPU kernels will really use: ATen's dispatch level (capped by ATEN_CPU_CAPABILITY) and
    oneDNN's ISA cap (ONEDNN_MAX_CPU_ISA, or its old name DNNL_MAX_CPU_ISA; unset = the best the CPU has)."""
    import torch

    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "ALL"
    return {"aten": torch.backends.cpu.get_cpu_capability(), "onednn_max": onednn.strip().upper()}


def native_bf16_blocker() -> Optional[str]:
    """None where bf16 runs natively on this CPU, else why not (hardware, or an ISA cap set in the environment)."""
    caps = cpu_capabilities()
    if not (caps.get("amx_bf16") or caps.get("avx512_bf16")):
        return "this CPU has no native bf16: no AMX / AVX-512 BF16"
    isa = kernel_isa()
    if not isa["aten"].upper().startswith("AVX512"):
        return f"torch's kernels are capped at {isa['aten']} (ATEN_CPU_CAPABILITY), so bf16 would be emulated"
    if isa["onednn_max"] not in _ONEDNN_BF16_ISAS:
        return f"oneDNN is capped at {isa['onednn_max']} (ONEDNN_MAX_CPU_ISA), so bf16 would be emulated"
    return None


_ONEDNN_AMX_ISAS = {isa for isa in _ONEDNN_BF16_ISAS if "AMX" in isa} | {"ALL", "DEFAULT"}


def cpu_has_amx_bf16() -> bool:
    """True where oneDNN's bf16 convolutions run on AMX tiles (AMX-BF16 present, bf16 native, no cap below AMX)."""
    return (cpu_has_native_bf16() and bool(cpu_capabilities().get("amx_bf16"))
            and kernel_isa()["onednn_max"] in _ONEDNN_AMX_ISAS)


def cpu_has_native_bf16() -> bool:
    """True where torch's kernels execute bf16 matrix maths natively (AMX-BF16 or AVX-512 BF16, not capped)."""
    return native_bf16_blocker() is None


def _dtype(name: str):
    import torch

    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": None}[name]


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
    if key == "int8" and ("int8" not in allowed or device.type != "cpu"):
        raise InputError("Precision int8 exists for MFEnet on the CPU only; use auto, fp32, bf16 or fp16.")
    if key != "auto":
        if key == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
            return Plan("bf16", f"bf16 requested; {native_bf16_blocker()} (emulated, expect it to be slower)")
        return Plan(key, f"{key} requested")
    if device.type == "cuda":
        if "fp16" in allowed:
            return Plan("fp16", "auto: float16 on CUDA (within the accuracy guard for this method)")
        return Plan("fp32", "auto: float32 (float16 is outside the accuracy guard for this method)")
    blocker = native_bf16_blocker()
    if "int8" in allowed and "bf16" in allowed and cpu_has_amx_bf16():
        return Plan("bf16", "auto: bfloat16 (AMX on this CPU: measured faster than the int8 encoder; within the "
                            "accuracy guard for this method)")
    if "int8" in allowed:
        why = blocker or "measured faster than native bf16 for this method"
        return Plan("int8", f"auto: int8 convolutions (within the accuracy guard; {why})")
    if blocker:
        return Plan("fp32", f"auto: float32 ({blocker})")
    if "bf16" in allowed:
        return Plan("bf16", "auto: bfloat16 (native on this CPU, within the accuracy guard for this method)")
    return Plan("fp32", "auto: float32 (bfloat16 is outside the accuracy guard for this method)")


# On a CPU a network runs on at most this many pixels a call (one 256 x 256 slice): smaller activations stay in
# the caches. MFEnet on 256 x 256, ms a slice for 1 / 2 / 8 slices a call, freed memory kept in the heap as the
# engine does (heap.py): bf16 40.9 / 45.0 / 50.7, fp32 179 / 185 / 183 (scripts/network_call_probe.py on a 2-core
# AMX Xeon, 2026-12-01; one run each).
CPU_PIXELS_PER_CALL = 256 * 256


def slices_per_call(device, shape) -> int:
    """How many slices of an (N, C, H, W) batch a network is given at once on ``device`` (all of them on a GPU)."""
    if device.type != "cpu":
        return max(1, shape[0])
    return max(1, CPU_PIXELS_PER_CALL // max(1, shape[-2] * shape[-1]))


def accelerate(fuse: Callable, plan: Plan, device, compile: bool = False, model=None) -> Callable:
    """Wrap a network's ``fuse(a, b)``: channels-last inputs and weights, autocast to ``plan``, float32 out.

    ``compile=True`` tries torch.compile; if compiling or a compiled call fails (no C++ compiler, an
    unsupported operator), it falls back to the eager function silently (logged at debug level) for good.
    """
    import torch

    model = model if model is not None else getattr(fuse, "model", None)
    if model is not None:
        model.to(memory_format=torch.channels_last)
    if plan.precision == "int8":
        from .int8_encoder import quantise_in_place

        quantise_in_place(model)
    dtype = plan.dtype
    state = {"fn": _try_compile(fuse) if compile else fuse}

    def run(a, b):
        step = slices_per_call(device, a.shape)
        if a.shape[0] > step:  # every method fuses slice by slice, so chunks give the same slices
            return torch.cat([run(a[i:i + step], b[i:i + step]) for i in range(0, a.shape[0], step)])
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
