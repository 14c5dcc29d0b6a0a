"""Holding SIGINT/SIGTERM/SIGHUP for the instants where an interruption would leave a file behind (creating a
staging folder or a probe, the final renames). A held signal stays pending and is delivered on release."""
from __future__ import annotations

import signal
import threading

# Signals that end a run; held for the instants where an interruption would leave a file behind.
HELD_SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGHUP")) if s)


def block_signals() -> bool:
    """Hold SIGINT/SIGTERM/SIGHUP (main thread, POSIX); True when they are now held."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        return False
    signal.pthread_sigmask(signal.SIG_BLOCK, HELD_SIGNALS)
    return True


def unblock_signals(held: bool) -> None:
    if held:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD_SIGNALS)
