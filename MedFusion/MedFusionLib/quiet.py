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

import numpy as np

log = logging.getLogger(__name__)
_LOCK = threading.RLock()


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
        os.dup2(sink.fileno(), fd)
        try:
            yield
        finally:
            os.dup2(saved, fd)
            os.close(saved)
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
