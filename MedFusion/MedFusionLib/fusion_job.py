"""A fusion running in a worker process (worker.py), driven by polling from the GUI thread.

``FusionJob`` writes the two input images and the engine's keyword arguments into a private temporary folder,
starts ``python worker.py FOLDER`` and returns. ``poll()`` only reads the few new lines of the worker's message file
and asks the OS whether the process still runs, so it returns in milliseconds; the poll that sees the result reads
the output images and hands them to ``finish`` (the caller's function that puts them into the scene, on the
caller's thread). ``cancel()`` kills the worker (and, where the Python executable is a launcher such as Slicer's
PythonSlicer, the real interpreter it started) and removes the folder.

A worker that exits without a result (a crash, an out-of-memory kill) or that shows no sign of life for
``stall_timeout`` seconds (it sends one every second from a separate thread, so only a frozen or stopped
interpreter goes quiet) ends the job with a :class:`WorkerError` of one sentence; the folder is removed in every
case. Knows nothing of MRML: see MedFusionLogic.start for the Slicer side.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, Optional

from . import errors, worker
from .errors import Cancelled, MedFusionError, WorkerError

log = logging.getLogger(__name__)

RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"
DEFAULT_STALL_TIMEOUT_S = 120.0
_LOG_TAIL_CHARS = 4000


def _error_class(name: str):
    """The MedFusion error class a worker reported by name (InputError, WeightsError, ...), else MedFusionError."""
    cls = getattr(errors, name, None)
    return cls if isinstance(cls, type) and issubclass(cls, MedFusionError) else MedFusionError


def exit_message(returncode: int) -> str:
    """One sentence for a worker that ended without a result."""
    if returncode < 0:  # POSIX: killed by a signal
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        if -returncode == getattr(signal, "SIGKILL", 9):
            return ("The fusion process was killed (SIGKILL) before it finished, most likely because the computer "
                    "ran out of memory; nothing was added to the scene (try the CPU or a smaller volume).")
        return f"The fusion process crashed ({name}) before it finished; nothing was added to the scene."
    return (f"The fusion process ended unexpectedly (exit code {returncode}) before it finished; nothing was added "
            f"to the scene (its log is in the Python console).")


class FusionJob:
    """One fusion in a worker process. ``state`` is running, done, failed or cancelled.

    While running: ``fraction`` (0..1, slices fused) and ``phase`` (a short text). When done: ``result`` is what
    ``finish(FusionResult)`` returned. When failed or cancelled: ``error`` is the MedFusionError to show.
    """

    def __init__(self, image_a, image_b, settings, finish: Callable[[Any], Any],
                 python: Optional[str] = None, env: Optional[Dict[str, str]] = None,
                 work_dir: Optional[str] = None, stall_timeout: float = DEFAULT_STALL_TIMEOUT_S):
        import SimpleITK as sitk

        from .settings import FusionSettings

        if not isinstance(settings, FusionSettings):  # fuse_volumes' keywords: checked here, before any worker
            settings = FusionSettings.create(**settings)
        self.state, self.fraction, self.phase = RUNNING, 0.0, worker.PHASE_STARTING
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self._finish = finish
        self._stall_timeout = float(stall_timeout)
        self._process: Optional[subprocess.Popen] = None
        self._log_file = None
        self._pending = b""
        self._outcome: Optional[dict] = None  # the worker's "result" or "error" message
        self._dir = tempfile.mkdtemp(prefix="MedFusion-", dir=work_dir)
        try:
            sitk.WriteImage(image_a, self._path(worker.INPUT_A), False)
            sitk.WriteImage(image_b, self._path(worker.INPUT_B), False)
            with open(self._path(worker.REQUEST), "wb") as f:
                pickle.dump({"settings": settings, "parent_pid": os.getpid()}, f)
            open(self._path(worker.MESSAGES), "wb").close()
            self._messages = open(self._path(worker.MESSAGES), "rb")
            self._launch(python or sys.executable, env)
        except BaseException:
            self._remove_folder()
            raise
        self._last_sign = time.monotonic()

    # ------------------------------------------------------------------ process ------------------------------
    def _path(self, name: str) -> str:
        return os.path.join(self._dir, name)

    def _launch(self, python: str, env: Optional[Dict[str, str]]) -> None:
        environment = dict(os.environ if env is None else env)
        environment["PYTHONUNBUFFERED"] = "1"
        options: Dict[str, Any] = {}
        if os.name == "nt":  # no console window; a group of its own so that taskkill /T reaches the interpreter
            options["creationflags"] = subprocess.CREATE_NO_WINDOW | subprocess.CREATE_NEW_PROCESS_GROUP
        else:  # a session of its own: killpg reaches the interpreter a launcher (PythonSlicer) started
            options["start_new_session"] = True
        self._log_file = open(self._path(worker.LOG), "wb")
        try:
            self._process = subprocess.Popen(
                [python, os.path.abspath(worker.__file__), self._dir], cwd=self._dir, env=environment,
                stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT, **options)
        except OSError as error:
            raise WorkerError(f"The fusion process could not be started with '{python}' "
                              f"({type(error).__name__}: {error.strerror or error}).") from error

    @property
    def pid(self) -> Optional[int]:
        """The process MedFusion started (the interpreter itself, or the launcher that started it)."""
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> Optional[int]:
        """The started process's exit status once it has ended (None while it runs)."""
        return self._process.poll() if self._process is not None else None

    def _kill(self) -> None:
        process = self._process
        if process is None or (os.name == "nt" and process.poll() is not None):
            return  # (on POSIX the group is killed even after the launcher ended: its interpreter may live on)
        try:
            if os.name == "nt":
                subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True, timeout=5)
            else:
                os.killpg(process.pid, signal.SIGKILL)
        except (OSError, subprocess.SubprocessError):
            pass
        try:
            process.kill()
            process.wait(timeout=1.0)
        except (OSError, subprocess.SubprocessError):
            pass

    def _remove_folder(self) -> None:
        for handle in (getattr(self, "_messages", None), self._log_file):
            if handle is not None:
                handle.close()
        for attempt in range(10):  # Windows: files stay locked for a moment after the process ends
            shutil.rmtree(self._dir, ignore_errors=True)
            if not os.path.exists(self._dir):
                return
            time.sleep(0.05)
        log.warning("MedFusion could not remove its temporary folder %s", self._dir)

    def _log_tail(self) -> str:
        try:
            with open(self._path(worker.LOG), "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - _LOG_TAIL_CHARS))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # ------------------------------------------------------------------ messages -----------------------------
    def _read_messages(self):
        data = self._pending + self._messages.read()
        lines = data.split(b"\n")
        self._pending = lines.pop()  # an incomplete last line waits for the next poll
        for line in lines:
            if line.strip():
                yield json.loads(line)

    def _handle(self, message: dict) -> None:
        self._last_sign = time.monotonic()
        kind = message.get("kind")
        if kind == "progress":
            self.phase = message.get("phase", self.phase)
            total = message.get("total", 0)
            if total:
                self.fraction = min(1.0, message.get("done", 0) / total)
        elif kind in ("result", "error"):
            self._outcome = message

    # ------------------------------------------------------------------ public -------------------------------
    @property
    def running(self) -> bool:
        return self.state == RUNNING

    def poll(self) -> bool:
        """Take in the worker's news; finish the job when it is over. Returns True while the job runs."""
        if self.state != RUNNING:
            return False
        exited = self._process.poll()  # before reading: every message written before the exit is then read
        for message in self._read_messages():
            self._handle(message)
        if self._outcome is not None and self._outcome["kind"] == "result":
            self._complete()
        elif self._outcome is not None:
            name = self._outcome.get("error", "")
            if getattr(errors, name, None) is None:  # not one of ours: a bug, whose traceback is in the log
                log.error("MedFusion: the fusion process failed with %s; its last output:\n%s", name, self._log_tail())
            self._end(FAILED, _error_class(name)(self._outcome.get("message", "")))
        elif exited is not None:
            tail = self._log_tail()
            if tail:
                log.error("MedFusion: the fusion process ended with status %s; its last output:\n%s", exited, tail)
            self._end(FAILED, WorkerError(exit_message(exited)))
        elif time.monotonic() - self._last_sign > self._stall_timeout:
            self._end(FAILED, WorkerError(
                f"The fusion process stopped responding (no sign of life for {self._stall_timeout:.0f} s), so it "
                f"was stopped; nothing was added to the scene."))
        return self.state == RUNNING

    def cancel(self) -> None:
        """Stop the worker now (kill, not ask) and remove the temporary folder; nothing reaches the scene."""
        if self.state == RUNNING:
            self._end(CANCELLED, Cancelled("Fusion was cancelled; nothing was added to the scene."))

    def wait(self, timeout: Optional[float] = None, interval: float = 0.05):
        """Poll until the job ends (for scripts and tests); returns ``result`` or raises ``error``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll():
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                raise WorkerError(f"The fusion did not finish within {timeout:.0f} s and was stopped.")
            time.sleep(interval)
        if self.error is not None:
            raise self.error
        return self.result

    def _end(self, state: str, error: Optional[BaseException]) -> None:
        self._kill()
        self._remove_folder()
        self.state, self.error = state, error

    def _complete(self) -> None:
        import SimpleITK as sitk

        try:
            with open(self._path(worker.RESULT), "rb") as f:
                result = pickle.load(f)
            result.fused = sitk.ReadImage(self._path(worker.FUSED))
            if os.path.exists(self._path(worker.EDGES)):
                result.edges = sitk.ReadImage(self._path(worker.EDGES))
        except Exception as error:  # a half-written result: the worker died while handing it over
            log.exception("MedFusion: reading the worker's result failed")
            self._end(FAILED, WorkerError(f"The fusion's result could not be read ({type(error).__name__}); "
                                          f"nothing was added to the scene."))
            return
        self._kill()  # everything is read: no need to wait for the interpreter's own shutdown (torch: ~0.5 s)
        self._remove_folder()
        try:
            self.result = self._finish(result)
        except MedFusionError as error:
            self.state, self.error = FAILED, error
            return
        except Exception as error:
            log.exception("MedFusion: adding the result to the scene failed")
            self.state, self.error = FAILED, MedFusionError(
                f"The result could not be added to the scene ({type(error).__name__}: {error}).")
            return
        self.fraction, self.phase, self.state = 1.0, "Done", DONE
