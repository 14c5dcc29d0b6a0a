"""MedFusionLogic.start: the fusion in a worker process, polled, on a real MRML scene (slicer-core) with the
real stroke volumes. Progress rises while polls stay quick; the result equals process()'s; cancel, a killed
worker, a frozen worker, an engine error in the worker and an input removed during the run each leave the scene
as it was and no temporary file.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from conftest_slicer import mrml, slicer  # noqa: F401  (fixture and the slicer-core module)
from MedFusionLib.errors import Cancelled, InputError, WorkerError
from MedFusionLib.fusion_job import CANCELLED, DONE, FAILED, exit_message
from MedFusionLib.logic import MedFusionLogic
from MedFusionLib.mrml_convert import voxel_array
from MedFusionLib.selftest import edge_labels
from test_slicer_logic import _translation, pet_mri, stroke  # noqa: F401  (fixtures: real volumes through MRML)

LAPLACIAN = dict(method="laplacian", device="cpu", batchSize=16)  # 140 slices: 9 progress messages


@pytest.fixture
def logic(tmp_path):
    """A logic whose worker folders go under tmp_path, so a test sees any file left behind."""
    instance = MedFusionLogic()
    instance.workDirectory = str(tmp_path / "work")
    os.mkdir(instance.workDirectory)
    return instance


def _left_behind(logic):
    return os.listdir(logic.workDirectory)


def _poll_until(job, condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert job.poll() or condition(), f"the job ended ({job.state}: {job.error}) before the condition held"
        assert time.monotonic() < deadline, "timed out waiting for the worker"
        time.sleep(0.02)


def _one_sentence(message: str) -> bool:
    return message.endswith(".") and ". " not in message[:-1]


def test_start_returns_a_job_whose_progress_rises_and_whose_result_equals_process(mrml, stroke, logic):
    t1, t2 = stroke
    ids_before = mrml.node_ids()
    began = time.perf_counter()
    job = logic.start(t1, t2, **LAPLACIAN)
    start_seconds = time.perf_counter() - began
    assert job.state == "running" and mrml.node_ids() == ids_before  # nothing in the scene before the result
    assert start_seconds < 5.0  # writes the inputs and starts the process; measured ~0.4 s here

    fractions, poll_cpu = [], []
    while True:
        cpu = time.thread_time()
        running = job.poll()
        if running:
            poll_cpu.append(time.thread_time() - cpu)
            fractions.append(job.fraction)
            assert job.phase
        else:
            break
        time.sleep(0.02)
    assert job.state == DONE and job.error is None, job.error
    assert max(poll_cpu) < 0.1  # a poll while running reads a few lines: well under 100 ms of work
    assert fractions == sorted(fractions) and len(set(f for f in fractions if 0 < f < 1)) >= 3
    assert job.fraction == 1.0 and _left_behind(logic) == []

    output = job.result
    assert set(output.created) == set(mrml.node_ids()) - set(ids_before)
    direct = logic.process(t1, t2, **LAPLACIAN)
    assert np.array_equal(voxel_array(output.volume), voxel_array(direct.volume))
    for ours, theirs in zip(edge_labels(output.edges, t1), edge_labels(direct.edges, t1)):
        assert np.array_equal(ours, theirs)
    assert output.result.windows == direct.result.windows and output.result.slices == direct.result.slices
    assert output.volume.GetName() == direct.volume.GetName().rsplit("_", 1)[0]  # same name, made unique


def test_rgb_result_through_the_worker_equals_process(mrml, pet_mri, logic):
    mri, pet = pet_mri
    output = logic.start(mri, pet, method="average", device="cpu").wait(timeout=120)
    direct = logic.process(mri, pet, method="average", device="cpu")
    assert output.volume.IsA("vtkMRMLVectorVolumeNode")
    assert np.array_equal(voxel_array(output.volume), voxel_array(direct.volume))


def test_cancel_stops_the_worker_within_a_second_and_leaves_nothing(mrml, stroke, logic):
    t1, t2 = stroke
    ids_before = mrml.node_ids()
    job = logic.start(t1, t2, method="mfenet", device="cpu", batchSize=1)  # several seconds of slices
    _poll_until(job, lambda: job.fraction > 0)  # the network is fusing
    began = time.perf_counter()
    job.cancel()
    assert time.perf_counter() - began < 1.0
    assert job.state == CANCELLED and isinstance(job.error, Cancelled)
    assert job.returncode is not None  # the process is gone
    assert not job.poll()
    assert mrml.node_ids() == ids_before and _left_behind(logic) == []


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
@pytest.mark.parametrize("signal_name, words", [("SIGKILL", ("killed", "out of memory")),  # the OOM killer
                                                ("SIGSEGV", ("crashed (SIGSEGV)",))])  # a crash in native code
def test_a_killed_or_crashed_worker_gives_one_sentence_and_an_unchanged_scene(mrml, stroke, logic, signal_name,
                                                                               words):
    t1, t2 = stroke
    ids_before = mrml.node_ids()
    job = logic.start(t1, t2, **LAPLACIAN)
    _poll_until(job, lambda: job.phase != "Starting the fusion process")  # the worker runs
    os.kill(job.pid, getattr(signal, signal_name))
    _poll_until(job, lambda: not job.running, timeout=30)
    assert job.state == FAILED and isinstance(job.error, WorkerError)
    message = str(job.error)
    assert all(word in message for word in words) and _one_sentence(message), message
    assert mrml.node_ids() == ids_before and _left_behind(logic) == []


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs POSIX signals to freeze a process")
def test_a_frozen_worker_is_stopped_after_the_stall_timeout(mrml, stroke, logic):
    t1, t2 = stroke
    ids_before = mrml.node_ids()
    job = logic.start(t1, t2, stallTimeout=2.0, **LAPLACIAN)
    _poll_until(job, lambda: job.phase != "Starting the fusion process")
    os.kill(job.pid, signal.SIGSTOP)  # a hang: the process lives but does nothing, not even its heartbeat
    began = time.monotonic()
    _poll_until(job, lambda: not job.running, timeout=30)
    assert 1.5 < time.monotonic() - began < 10
    assert isinstance(job.error, WorkerError) and "stopped responding" in str(job.error)
    assert _one_sentence(str(job.error))
    assert mrml.node_ids() == ids_before and _left_behind(logic) == []


def test_an_engine_error_in_the_worker_arrives_typed(mrml, stroke, logic):
    t1, t2 = stroke
    ids_before = mrml.node_ids()
    # Settings are checked once, by start, before any process: a batch size of 0 never reaches a worker.
    with pytest.raises(InputError, match="Batch size must be at least 1"):
        logic.start(t1, t2, method="average", device="cpu", batchSize=0)
    assert mrml.node_ids() == ids_before and _left_behind(logic) == []
    # What only the engine finds (B moved 5 m away: no overlap in physical space) is raised in the worker, typed.
    t2.SetAndObserveTransformNodeID(_translation(mrml.scene, (5000.0, 0.0, 0.0)).GetID())
    ids_before = mrml.node_ids()
    job = logic.start(t1, t2, method="average", device="cpu")
    with pytest.raises(InputError, match="do not overlap in physical space"):
        job.wait(timeout=120)
    assert mrml.node_ids() == ids_before and _left_behind(logic) == []


def test_an_input_removed_during_the_run_adds_nothing(mrml, stroke, logic):
    t1, t2 = stroke
    job = logic.start(t1, t2, **LAPLACIAN)
    mrml.scene.RemoveNode(t2)  # as a scene close would
    ids_after_removal = mrml.node_ids()
    with pytest.raises(InputError, match="'T2' .* was removed from the scene during the fusion"):
        job.wait(timeout=120)
    assert mrml.node_ids() == ids_after_removal and _left_behind(logic) == []


def test_bad_inputs_are_refused_by_start_before_any_process():
    with pytest.raises(InputError, match="Select volume A"):
        MedFusionLogic().start(None, None)


def test_exit_messages_are_one_sentence():
    for code in (-getattr(signal, "SIGKILL", 9), -signal.SIGSEGV, 1, 137):
        assert _one_sentence(exit_message(code)), exit_message(code)
    assert "SIGSEGV" in exit_message(-signal.SIGSEGV) and "exit code 137" in exit_message(137)


def test_a_python_that_cannot_be_started_is_one_sentence_and_leaves_nothing(mrml, stroke, logic):
    t1, t2 = stroke
    ids_before = mrml.node_ids()
    logic.workerPython = str(Path(logic.workDirectory).parent / "no-such-python")
    with pytest.raises(WorkerError, match="The fusion process could not be started with"):
        logic.start(t1, t2, **LAPLACIAN)
    assert mrml.node_ids() == ids_before and _left_behind(logic) == []


def test_a_scene_closed_during_the_run_gets_nothing(mrml, stroke, logic):
    t1, t2 = stroke
    job = logic.start(t1, t2, **LAPLACIAN)
    mrml.scene.Clear(0)  # File > Close Scene (the widget also cancels the job when it sees the close)
    ids_after_close = mrml.node_ids()
    with pytest.raises(InputError, match="was removed from the scene during the fusion; nothing was added"):
        job.wait(timeout=120)
    assert mrml.node_ids() == ids_after_close and _left_behind(logic) == []


@pytest.mark.skipif(os.name == "nt", reason="the worker watches its parent through POSIX signal 0")
def test_a_worker_whose_parent_died_stops_and_removes_its_folder(tmp_path, stroke_dir):
    """Slicer crashing (here: a parent process that starts a job and dies) leaves no worker running on."""
    import subprocess
    import sys

    code = (
        "import os, sys, time\n"
        "from MedFusionLib import read_volume\n"
        "from MedFusionLib.fusion_job import FusionJob\n"
        f"d = {str(stroke_dir)!r}\n"
        "job = FusionJob(read_volume(d + '/T1.nii.gz'), read_volume(d + '/T2.nii.gz'),\n"
        "                dict(method='mfenet', device='cpu', batch_size=1), finish=lambda r: r,\n"
        f"                work_dir={str(tmp_path)!r})\n"
        "while job.poll() and job.fraction == 0: time.sleep(0.05)\n"
        "print(job.pid, flush=True)\n"
        "os._exit(0)\n")  # dies without cancelling: nobody kills the worker
    parent = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert parent.returncode == 0, parent.stderr[-2000:]
    worker_pid = int(parent.stdout.split()[-1])

    def worker_gone():
        try:
            with open(f"/proc/{worker_pid}/stat") as f:
                return f.read().split(") ", 1)[1].startswith("Z")  # a zombie has ended
        except FileNotFoundError:
            return True

    deadline = time.monotonic() + 15
    while not (worker_gone() and os.listdir(tmp_path) == []):
        assert time.monotonic() < deadline, f"worker {worker_pid} still runs, or left {os.listdir(tmp_path)}"
        time.sleep(0.2)
