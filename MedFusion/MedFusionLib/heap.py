"""Keep freed memory for reuse while fusing (glibc only): big tensors then stop costing page faults.

glibc serves every allocation above its mmap threshold (at most 32 MB) with a fresh mmap and unmaps it on free,
so each network layer's output (a 64-channel 256 x 256 batch of 8 slices is 134 MB) is faulted in page by page,
zeroed by the kernel, on every call. MFEnet, 256 x 256, ms a slice with 8 slices a call, mmap (glibc's
default) against memory kept in the heap: float32 310 / 183, bfloat16 135 / 51, int8 encoder 86 / 49
(scripts/network_call_probe.py on a 2-core AMX Xeon, 2026-12-01; README "Performance").

:func:`reused_heap` sets that up for the duration of a fusion (mallopt: no mmap for big blocks, no trimming of
the heap's top) and restores glibc's defaults afterwards, handing the kept memory back (malloc_trim): a process
that hosts the engine (the Slicer worker, the CLI, or Slicer itself when its logic is called in-process) keeps
glibc's behaviour outside a fusion. Elsewhere (macOS, Windows, musl) it does nothing: their allocators differ,
and nothing here was measured on them.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import sys
import threading
from typing import Optional

# mallopt parameters (malloc.h) and glibc's defaults for them.
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
GLIBC_TRIM_THRESHOLD_DEFAULT, GLIBC_MMAP_MAX_DEFAULT = 128 * 1024, 65536
KEEP_FREED_BYTES = 1 << 30  # the heap's top is trimmed only beyond this much free memory

_lock = threading.Lock()
_depth = 0  # nested or concurrent fusions share one setting


@functools.lru_cache(maxsize=1)
def _glibc() -> Optional[ctypes.CDLL]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()  # only glibc has it (musl does not)
        libc.mallopt.argtypes, libc.mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = (ctypes.c_size_t,), ctypes.c_int
        return libc
    except (OSError, AttributeError):
        return None


def available() -> bool:
    """True where the heap setting applies (Linux with glibc)."""
    return _glibc() is not None


@contextlib.contextmanager
def reused_heap():
    """Within the block, big allocations come from the heap and freed memory stays there for the next one."""
    global _depth
    libc = _glibc()
    if libc is None:
        yield
        return
    with _lock:
        if _depth == 0:
            libc.mallopt(M_MMAP_MAX, 0)
            libc.mallopt(M_TRIM_THRESHOLD, KEEP_FREED_BYTES)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(M_MMAP_MAX, GLIBC_MMAP_MAX_DEFAULT)
                libc.mallopt(M_TRIM_THRESHOLD, GLIBC_TRIM_THRESHOLD_DEFAULT)
                libc.malloc_trim(0)  # hand the kept memory back to the system
