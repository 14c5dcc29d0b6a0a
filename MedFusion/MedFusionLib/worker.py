"""The fusion worker: a separate Python process that runs :func:`MedFusionLib.engine.fuse_volumes` for Slicer.

Slicer starts it with its own Python (``sys.executable``) as ``python worker.py JOB_DIR`` (see fusion_job.py), so
that torch never runs in Slicer's process: a crash, an out-of-memory kill or a hang loses the worker, not the scene.

Everything goes through files in ``JOB_DIR`` (a private temporary folder the parent creates and removes):

    request.pkl    written by the parent: {"engine": keyword arguments of fuse_volumes except the two images,
                                           "parent_pid": its process id (the worker stops when it is gone)}
    a.mha, b.mha   written by the parent: the two input images (uncompressed MetaImage: fast, lossless)
    messages.jsonl written here, one JSON object a line, appended and flushed:
                     {"kind": "progress", "done": D, "total": T, "phase": TEXT}
                     {"kind": "alive"}                        (every HEARTBEAT_S: the interpreter still runs)
                     {"kind": "result"}                       (fused.mha, edges.mha, result.pkl are complete)
                     {"kind": "error", "error": CLASS, "message": SENTENCE}
    fused.mha, edges.mha, result.pkl   written here: the FusionResult's images and its other fields

The engine keyword arguments travel as one pickled dict, so an option another part of MedFusion adds to
``fuse_volumes`` reaches the engine with no change here. Pickle is safe here: both ends are our own code and the
folder is private to the user (``tempfile.mkdtemp``).
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback

REQUEST, INPUT_A, INPUT_B = "request.pkl", "a.mha", "b.mha"
MESSAGES, LOG = "messages.jsonl", "worker.log"
FUSED, EDGES, RESULT = "fused.mha", "edges.mha", "result.pkl"
HEARTBEAT_S = 1.0

PHASE_STARTING = "Starting the fusion process"
PHASE_LOADING = "Loading the method"
PHASE_FUSING = "Fusing slices"
PHASE_WRITING = "Handing the result over"


class _Messages:
    """Appends one JSON line per message; a lock keeps the heartbeat thread's lines whole."""

    def __init__(self, path: str):
        self._file = open(path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def send(self, kind: str, **fields) -> None:
        line = json.dumps({"kind": kind, **fields}) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still exists (POSIX; elsewhere assumed alive: Windows has no signal 0)."""
    if not pid or os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _heartbeat(messages: _Messages, job_dir: str, parent_pid: int) -> None:
    """A sign of life every HEARTBEAT_S; if the process that started us is gone (Slicer crashed or was killed),
    nobody will read the result: remove the job folder and stop, instead of using the CPU or GPU for nothing."""
    while True:
        time.sleep(HEARTBEAT_S)
        if not _alive(parent_pid):
            import shutil

            shutil.rmtree(job_dir, ignore_errors=True)
            os._exit(3)
        messages.send("alive")


def run(job_dir: str) -> int:
    """Fuse the job in ``job_dir``; returns the exit status (0 also after a reported error)."""
    import pickle

    messages = _Messages(os.path.join(job_dir, MESSAGES))
    messages.send("progress", done=0, total=0, phase=PHASE_LOADING)
    with open(os.path.join(job_dir, REQUEST), "rb") as f:
        request = pickle.load(f)
    threading.Thread(target=_heartbeat, args=(messages, job_dir, request.get("parent_pid", 0)), daemon=True).start()
    try:
        import SimpleITK as sitk

        from MedFusionLib.engine import fuse

        image_a = sitk.ReadImage(os.path.join(job_dir, INPUT_A))
        image_b = sitk.ReadImage(os.path.join(job_dir, INPUT_B))

        def progress(done: int, total: int) -> None:
            messages.send("progress", done=int(done), total=int(total), phase=PHASE_FUSING)

        result = fuse(image_a, image_b, request["settings"], progress=progress)
        messages.send("progress", done=result.slices, total=result.slices, phase=PHASE_WRITING)
        sitk.WriteImage(result.fused, os.path.join(job_dir, FUSED), False)
        if result.edges is not None:
            sitk.WriteImage(result.edges, os.path.join(job_dir, EDGES), False)
        result.fused, result.edges, result.sources = None, None, None
        with open(os.path.join(job_dir, RESULT), "wb") as f:
            pickle.dump(result, f)
        messages.send("result")
    except Exception as error:  # reported to the parent as one message; the traceback goes to the log
        from MedFusionLib.errors import MedFusionError

        traceback.print_exc()
        if isinstance(error, MedFusionError):
            messages.send("error", error=type(error).__name__, message=str(error))
        else:
            messages.send("error", error=type(error).__name__,
                          message=f"The fusion failed ({type(error).__name__}: {error}).")
    sys.stdout.flush()
    sys.stderr.flush()
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: worker.py JOB_DIR", file=sys.stderr)
        return 2
    return run(argv[0])


if __name__ == "__main__":
    # Run as a script: import the package from the folder above, not this file's folder (whose module names,
    # e.g. colour.py, must not shadow anything).
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or os.getcwd()) == here:
        sys.path.pop(0)
    sys.path.insert(0, os.path.dirname(here))
    from MedFusionLib.worker import main as _main  # the package's copy of this module

    sys.exit(_main())
