"""Holding SIGINT/SIGTERM/SIGHUP for the instants where an interruption would leave a file behind (creating a
staging folder or a probe, the final renames, pointing descriptor 2 elsewhere and back).

A signal mask would not do: ``pthread_sigmask`` masks the calling thread only, and the kernel hands a signal sent
to the process to any thread that does not mask it (torch's, ITK's, our registration check's), whose C handler
then makes the main thread raise anyway. So the hold swaps the Python-level handlers for one that notes the signal,
and puts the previous ones back on release; a noted signal is then delivered (or, for the commit, reported).
"""
from __future__ import annotations

import signal
import threading
from typing import Dict, List, Tuple

# Signals that end a run; held for the instants where an interruption would leave a file behind.
HELD_SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGHUP")) if s)


class SignalHold:
    """``with SignalHold():`` holds the signals inside (main thread; elsewhere the host owns signals and nothing
    is held). A signal that arrived is delivered on leaving, or only listed in ``arrived`` with ``deliver=False``.
    """

    def __init__(self, deliver: bool = True):
        self.deliver = deliver
        self.arrived: List[int] = []
        self._previous: Dict[int, object] = {}

    def start(self) -> "SignalHold":
        if threading.current_thread() is not threading.main_thread():
            return self
        # Read every handler before changing any, so an interruption here leaves nothing swapped.
        previous = {s: signal.getsignal(s) for s in HELD_SIGNALS}
        previous = {s: h for s, h in previous.items() if h is not None}  # None: installed outside Python
        self._previous = previous
        try:
            for number in previous:
                signal.signal(number, self._note)
        except ValueError:  # a sub-interpreter: signals belong to the main one, so the first change already fails
            self._previous = {}
        except BaseException:
            self.release()
            raise
        return self

    def release(self) -> None:
        """Put the previous handlers back, then deliver what arrived (unless ``deliver`` is False)."""
        previous, self._previous = list(self._previous.items()), {}
        _restore(previous)  # a signal meanwhile is noted by a handler not yet restored, or raised by one that is
        if self.deliver:
            for number in dict.fromkeys(self.arrived):
                signal.raise_signal(number)

    def _note(self, number, frame):
        self.arrived.append(number)

    def __enter__(self) -> "SignalHold":
        return self.start()

    def __exit__(self, *exc) -> bool:
        self.release()
        return False


def _restore(handlers: List[Tuple[int, object]]) -> None:
    # Each handler is put back in a finally block: when one already restored raises (its signal came just then),
    # the others are still restored as the exception unwinds (CPython checks for signals after calls, not on
    # entering a finally block).
    if handlers:
        number, handler = handlers[0]
        try:
            _restore(handlers[1:])
        finally:
            signal.signal(number, handler)
