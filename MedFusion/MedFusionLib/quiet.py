"""Keep library chatter (ITK, NIfTI, GDCM, numpy, pywt) off the terminal: the user reads one sentence from us.

ITK warnings go through its own display switch; niftilib and GDCM print straight to file descriptor 2, so that
descriptor is pointed at a temporary file for the duration and what was printed is logged at debug level
(nothing is lost for someone debugging with ``logging.DEBUG``).
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
import warnings
from typing import List

import numpy as np

from .held_signals import SignalHold

log = logging.getLogger(__name__)
_LOCK = threading.RLock()
_REDIRECTS: List[list] = []  # [descriptor, saved copy] of every redirect not yet undone, innermost last


def _undo(redirect: list) -> None:
    with SignalHold():
        if any(r is redirect for r in _REDIRECTS):  # not already undone by restore_native_stderr()
            _REDIRECTS[:] = [r for r in _REDIRECTS if r is not redirect]
            os.dup2(redirect[1], redirect[0])
            os.close(redirect[1])


def restore_native_stderr() -> None:
    """Point every descriptor that quiet_libraries() redirected back where it was (innermost first)."""
    while _REDIRECTS:
        _undo(_REDIRECTS[-1])


@contextlib.contextmanager
def _native_stderr_to_log():
    try:
        fd = sys.stderr.fileno() if sys.stderr is not None else 2
    except (AttributeError, OSError, ValueError):
        fd = 2  # pytest's capture or an embedded interpreter: descriptor 2 is still where C libraries print
    try:
        saved = os.dup(fd)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as sink:
        try:
            sys.stderr.flush()
        except (AttributeError, OSError, ValueError):
            pass
        # Signals are held while the descriptor is pointed away and back, and every redirect is listed until it
        # is undone: an interruption can still skip a with-exit (it may land as __enter__ returns), and then
        # restore_native_stderr() puts the descriptor back before the user's one sentence is printed.
        redirect = [fd, saved]
        try:
            with SignalHold():
                os.dup2(sink.fileno(), fd)
                _REDIRECTS.append(redirect)
            yield
        finally:
            _undo(redirect)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace").strip()
            if text:
                log.debug("library output: %s", text)


@contextlib.contextmanager
def quiet_libraries():
    """Silence ITK warnings, C-level stderr, numpy floating-point warnings and Python warnings inside."""
    import SimpleITK as sitk

    with _LOCK:
        previous = sitk.ProcessObject.GetGlobalWarningDisplay()
        sitk.ProcessObject.SetGlobalWarningDisplay(False)
        try:
            with _native_stderr_to_log(), np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        finally:
            sitk.ProcessObject.SetGlobalWarningDisplay(previous)
