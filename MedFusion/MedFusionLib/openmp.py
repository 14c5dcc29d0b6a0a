"""Idle OpenMP threads sleep instead of spinning: the one place this is decided (CLI, batch workers, scripts,
tests). With spinning, torch ran 20x slower (34 s vs 1.5 s, GFF on sts_001) whenever another process was busy
on the same cores. Takes effect only if applied before torch loads OpenMP; this module imports nothing heavy.
"""
from __future__ import annotations

import os

IDLE_THREADS_SLEEP = {"OMP_WAIT_POLICY": "PASSIVE"}


def let_idle_threads_sleep(environ=os.environ) -> None:
    """Set the policy in ``environ`` (this process's by default) unless the user chose one."""
    for name, value in IDLE_THREADS_SLEEP.items():
        environ.setdefault(name, value)
