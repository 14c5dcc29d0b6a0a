"""Cohort fusion on Dask (``medfusion batch``): a 3-case cohort cut from the shared volumes, one row bad.

Run on an in-process LocalCluster of 2 workers and on a real ``dask scheduler`` + ``dask worker`` started here
on 127.0.0.1; checked: outputs against a direct fusion, summary.csv, failure isolation, resume and --force.
"""
from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("distributed", reason="dask[distributed] is the 'batch' extra")

import MedFusionLib  # noqa: E402
from MedFusionLib.batch import CaseSpec, read_cohort, run_batch  # noqa: E402
from MedFusionLib.batch.case import run_case  # noqa: E402
from MedFusionLib.openmp import IDLE_THREADS_SLEEP  # noqa: E402
from MedFusionLib.batch.manifest import settings_hash  # noqa: E402
from MedFusionLib.cli import main  # noqa: E402
from MedFusionLib.engine import fuse_volumes  # noqa: E402
from MedFusionLib.errors import InputError  # noqa: E402

DEFAULTS = CaseSpec(id="", method="average")
HEADER = "id,a,b,method,preset_a,preset_b,colormap_b,edges,preview\n"
ROWS = ("stroke,t1.nrrd,t2.nrrd,laplacian,mr,mr,,yes,no\n"  # MR-T1 + T2 on an oblique grid, with edges
        "ctpet,ct.nrrd,pet.nrrd,,ct:soft,pet,hot,,yes\n"  # CT + scalar PET coloured: RGB, with a preview
        "broken,t1.nrrd,broken.nii.gz,,,,,,\n")  # the deliberately bad row: B is not an image


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, sts_dir, stroke_dir):
    """The cohort file and its inputs: real volumes cut to 4 slices so each case fuses in well under a second."""
    folder = tmp_path_factory.mktemp("cohort")
    sitk.WriteImage(sitk.ReadImage(str(stroke_dir / "T1.nii.gz"))[10:110, 20:140, 60:64], str(folder / "t1.nrrd"))
    sitk.WriteImage(sitk.ReadImage(str(stroke_dir / "T2.nii.gz"))[:, :, 58:66], str(folder / "t2.nrrd"))
    sitk.WriteImage(sitk.ReadImage(str(sts_dir / "CT.nii.gz"))[40:140, 40:140, 24:28], str(folder / "ct.nrrd"))
    sitk.WriteImage(sitk.ReadImage(str(sts_dir / "PET.nii.gz"))[:, :, 22:30], str(folder / "pet.nrrd"))
    (folder / "broken.nii.gz").write_bytes(b"not an image at all")
    (folder / "cohort.csv").write_text(HEADER + ROWS)
    return folder / "cohort.csv"


@pytest.fixture
def restore_threads():
    """An in-process cluster applies each case's thread limit to this process: give the suite its threads back."""
    import torch

    torch_threads, itk_threads = torch.get_num_threads(), sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    cv_threads = cv2.getNumThreads()
    yield
    torch.set_num_threads(torch_threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(itk_threads)
    cv2.setNumThreads(cv_threads)


def _summary(out: Path):
    with open(out / "summary.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _mtimes(out: Path):
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.glob("*/*") if p.name != "log.txt"}


def _good_cohort(cohort: Path) -> Path:
    """The cohort without its bad row, beside it (the same relative input paths)."""
    good = cohort.parent / "good.csv"
    good.write_text(HEADER + "".join(ROWS.splitlines(keepends=True)[:2]))
    return good


def _check_first_run(cohort: Path, out: Path, statuses):
    """Outputs, logs and summary of a run in which stroke and ctpet were fused and broken failed."""
    folder = cohort.parent
    rows = _summary(out)
    assert [(r["id"], r["status"]) for r in rows] == [("stroke", statuses[0]), ("ctpet", statuses[1]),
                                                      ("broken", "failed")]
    stroke, ctpet, broken = rows

    # The batch writes exactly what a direct fusion with the row's settings gives, in A's geometry.
    t1, t2 = sitk.ReadImage(str(folder / "t1.nrrd")), sitk.ReadImage(str(folder / "t2.nrrd"))
    direct = fuse_volumes(t1, t2, method="laplacian", preset_a="mr", preset_b="mr", edges=True)
    fused, edges = sitk.ReadImage(str(out / stroke["fused"])), sitk.ReadImage(str(out / stroke["edges"]))
    assert stroke["fused"] == "stroke/fused.nrrd" and stroke["edges"] == "stroke/edges.nrrd"
    np.testing.assert_array_equal(sitk.GetArrayFromImage(fused), sitk.GetArrayFromImage(direct.fused))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(edges), sitk.GetArrayFromImage(direct.edges))
    assert fused.GetSize() == t1.GetSize() and fused.GetDirection() == t1.GetDirection()
    assert np.allclose(fused.GetOrigin(), t1.GetOrigin()) and np.allclose(fused.GetSpacing(), t1.GetSpacing())
    assert float(stroke["overlap"]) == pytest.approx(direct.overlap, abs=1e-4)
    offset = getattr(direct, "registration_offset_mm", None)  # added by the registration check, where merged
    assert stroke["registration_offset_mm"] == ("" if offset is None else f"{offset:.2f}")
    assert stroke["method"] == "laplacian" and stroke["preview"] == "" and float(stroke["seconds"]) > 0

    rgb = sitk.ReadImage(str(out / ctpet["fused"]))
    assert rgb.GetNumberOfComponentsPerPixel() == 3 and rgb.GetSize() == (100, 100, 4)
    assert ctpet["method"] == "average" and ctpet["edges"] == ""
    assert cv2.imread(str(out / ctpet["preview"])).shape[2] == 3
    assert not (out / "ctpet" / "edges.nrrd").exists()

    # The bad row failed alone, with one sentence, and left no output.
    assert broken["error"].startswith("Cannot read") and broken["error"].endswith(".")
    assert broken["error"].count(". ") == 0 and "Traceback" not in broken["error"]
    assert broken["fused"] == "" and not (out / "broken" / "fused.nrrd").exists()
    assert "failed: Cannot read" in (out / "broken" / "log.txt").read_text()
    for case in ("stroke", "ctpet"):
        manifest = json.loads((out / case / "case.json").read_text())
        assert set(manifest["outputs"]) == ({"fused", "edges"} if case == "stroke" else {"fused", "preview"})
        assert "fused: " in (out / case / "log.txt").read_text()
    assert not list(out.glob("*/.staging-*")) and not list(out.glob(".*.tmp"))
    return rows


def test_local_cluster_outputs_isolation_and_resume(cohort, tmp_path, restore_threads):
    out = tmp_path / "out"
    report = run_batch(cohort, out, DEFAULTS, workers=2, processes=False, progress=False, say=lambda m: None)
    assert [r.status for r in report.records] == ["ok", "ok", "failed"] and len(report.failed) == 1
    _check_first_run(cohort, out, ("ok", "ok"))
    share = max(1, (os.cpu_count() or 1) // 2)  # each case's share of the cores, 2 workers
    assert all(f"threads: torch {share}, OpenCV {share}, SimpleITK {share}" in (out / c / "log.txt").read_text()
               for c in ("stroke", "ctpet"))

    # Re-run: the two good cases are up to date and untouched; the failed one is tried again.
    before = _mtimes(out)
    again = run_batch(cohort, out, DEFAULTS, workers=2, processes=False, progress=False, say=lambda m: None)
    assert [r.status for r in again.records] == ["skipped", "skipped", "failed"]
    assert _mtimes(out) == before
    _check_first_run(cohort, out, ("skipped", "skipped"))

    # A changed input, or a damaged output, makes only that case run again.
    t2 = cohort.parent / "t2.nrrd"
    os.utime(t2, ns=(t2.stat().st_atime_ns, t2.stat().st_mtime_ns + 10**9))
    with open(out / "ctpet" / "preview.png", "r+b") as handle:
        handle.truncate(100)
    third = run_batch(cohort, out, DEFAULTS, workers=2, processes=False, progress=False, say=lambda m: None)
    assert [r.status for r in third.records] == ["ok", "ok", "failed"]
    _check_first_run(cohort, out, ("ok", "ok"))

    # --force redoes up-to-date cases.
    before = _mtimes(out)
    forced = run_batch(cohort, out, DEFAULTS, workers=2, processes=False, progress=False, force=True,
                       say=lambda m: None)
    assert [r.status for r in forced.records] == ["ok", "ok", "failed"]
    assert all(_mtimes(out)[name] != stamp for name, stamp in before.items())


def _process_group(pgid: int):
    """The live processes of a process group (Linux /proc)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


def _listening(pids):
    """(ip, port) of every TCP socket the given processes listen on, from /proc/net/tcp{,6}."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table, width in (("tcp", 8), ("tcp6", 32)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ip_hex, port_hex = fields[1].split(":")
                if width == 8:
                    ip = ".".join(str(b) for b in reversed(bytes.fromhex(ip_hex)))
                else:
                    ip = "::" if int(ip_hex, 16) == 0 else ip_hex
                found.add((ip, int(port_hex, 16)))
    return found


def test_local_cluster_listens_on_loopback_only(restore_threads):
    from MedFusionLib.batch.runner import _local_client

    before = _listening([os.getpid()])
    with _local_client(2, False, None, "auto") as (client, resources, threads):
        opened = _listening([os.getpid()]) - before
        assert len(client.scheduler_info(n_workers=-1)["workers"]) == 2 and resources == {"case": 1}
    assert len(opened) >= 3 and all(ip == "127.0.0.1" for ip, _ in opened)


def _free_of(proc):
    """Stop a process group we started: SIGTERM, then SIGKILL; never leaves it running."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """A real scheduler and one worker (nanny + worker process) on 127.0.0.1, on ports the OS picks. A task
    whose worker dies is not retried (allowed-failures 0), so that a dying worker fails its case at once."""
    tmp_path = tmp_path_factory.mktemp("dask")
    scheduler_file = tmp_path / "scheduler.json"
    env = dict(os.environ, **IDLE_THREADS_SLEEP, DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="0",
               PYTHONPATH=os.pathsep.join([str(Path(MedFusionLib.__file__).parents[1]),
                                           os.environ.get("PYTHONPATH", "")]))
    common = dict(env=env, cwd=tmp_path, start_new_session=True, stdout=subprocess.DEVNULL,
                  stderr=open(tmp_path / "dask.log", "w"))
    loopback = ["--host", "127.0.0.1", "--no-dashboard", "--dashboard-address", "127.0.0.1:0"]  # HTTP too
    procs = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--port", "0", *loopback,
                               "--scheduler-file", str(scheduler_file)], **common)]
    try:
        deadline = time.monotonic() + 90
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            if procs[0].poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dask scheduler did not start: {(tmp_path / 'dask.log').read_text()[-2000:]}")
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        procs.append(subprocess.Popen([sys.executable, "-m", "dask", "worker", address, *loopback,
                                       "--nthreads", "1", "--resources", "case=1",
                                       "--memory-limit", "4GB", "--death-timeout", "60"], **common))
        yield address, [proc.pid for proc in procs]
    finally:
        for proc in reversed(procs):
            _free_of(proc)


def test_cli_on_a_real_scheduler_and_worker(cohort, tmp_path, dask_cluster, capsys):
    address, groups = dask_cluster
    out = tmp_path / "out"
    argv = ["batch", str(cohort), "--out", str(out), "--scheduler", address, "--threads", "1", "-q",
            "--method", "average"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "1 of 3 case(s) failed" in err and "case 'broken' failed: Cannot read" in err
    _check_first_run(cohort, out, ("ok", "ok"))
    header = (out / "stroke" / "log.txt").read_text().splitlines()[0]
    assert f"pid {os.getpid()}:" not in header  # fused in the worker process, with the threads asked for
    assert "threads: torch 1, OpenCV 1, SimpleITK 1" in (out / "stroke" / "log.txt").read_text()

    assert main(argv) == 2  # resume: the good cases are skipped, the bad one fails again
    _check_first_run(cohort, out, ("skipped", "skipped"))

    good = _good_cohort(cohort)
    assert main(["batch", str(good), "--out", str(out), "--scheduler", address, "-q", "--force",
                 "--method", "average"]) == 0
    assert [r["status"] for r in _summary(out)] == ["ok", "ok"]
    assert "2 of 2 case(s) done" in capsys.readouterr().out
    # Scheduler, nanny and worker (protocol and HTTP endpoints alike) listen on loopback only.
    members = [pid for group in groups for pid in _process_group(group)]
    assert len(members) >= 3 and _listening(members) and all(ip == "127.0.0.1" for ip, _ in _listening(members))


def test_a_worker_that_dies_fails_only_its_case(cohort, stroke_dir, tmp_path, dask_cluster):
    address, _ = dask_cluster
    folder, out = cohort.parent, tmp_path / "out"
    slow_a = folder / "t1_40.nrrd"  # MFEnet on 40 slices: long enough to be caught running
    sitk.WriteImage(sitk.ReadImage(str(stroke_dir / "T1.nii.gz"))[:, :, 50:90], str(slow_a))
    path = tmp_path / "dies.csv"
    path.write_text(f"id,a,b,method\nslow,{slow_a},{folder / 't2.nrrd'},mfenet\n"
                    f"quick,{folder / 't1.nrrd'},{folder / 't2.nrrd'},average\n")
    box = {}
    runner = threading.Thread(target=lambda: box.update(report=run_batch(
        path, out, DEFAULTS, scheduler=address, progress=False, say=lambda m: None)))
    runner.start()
    try:
        deadline, pid = time.monotonic() + 120, None
        while pid is None and time.monotonic() < deadline and runner.is_alive():
            match = re.search(r" pid (\d+):", (out / "slow" / "log.txt").read_text()) if (
                out / "slow" / "log.txt").exists() else None
            pid = int(match.group(1)) if match else None
            time.sleep(0.1)
        assert pid is not None and pid != os.getpid(), "the slow case never started on the worker"
        os.kill(pid, signal.SIGKILL)  # the worker process our fixture's nanny started
    finally:
        runner.join(timeout=180)
    assert not runner.is_alive() and "report" in box
    slow, quick = box["report"].records
    assert slow.status == "failed" and slow.error.startswith("The Dask worker fusing this case died")
    assert quick.status == "ok" and (out / "quick" / "fused.nrrd").is_file()
    assert not (out / "slow" / "fused.nrrd").exists() and not (out / "slow" / "case.json").exists()
    assert "KilledWorker" in (out / "slow" / "log.txt").read_text()


def test_cli_default_local_cluster_of_worker_processes(cohort, tmp_path, capsys):
    """What a laptop user runs: worker processes on this machine; exit 0 when every case succeeds."""
    good = _good_cohort(cohort)
    out = tmp_path / "out"
    argv = ["batch", str(good), "--out", str(out), "--workers", "2", "--memory-limit", "2GB", "--method", "average",
            "-q"]
    assert main(argv) == 0
    assert "2 of 2 case(s) done (0 up to date), 0 failed" in capsys.readouterr().out
    assert [r["status"] for r in _summary(out)] == ["ok", "ok"]
    for case in ("stroke", "ctpet"):
        header = (out / case / "log.txt").read_text().splitlines()[0]
        assert f"pid {os.getpid()}:" not in header  # fused in a worker process, not in this one
    assert sitk.ReadImage(str(out / "ctpet" / "fused.nrrd")).GetNumberOfComponentsPerPixel() == 3
    assert main(argv[:-1] + ["--memory-limit", "lots", "-q"]) == 2
    assert "Memory limit 'lots' is not a size" in capsys.readouterr().err


def test_unreachable_scheduler_is_one_input_error_and_writes_nothing(cohort, tmp_path):
    import socket

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "out"
    with pytest.raises(InputError, match=f"Cannot reach the Dask scheduler at 'tcp://127.0.0.1:{port}'"):
        run_batch(cohort, out, DEFAULTS, scheduler=f"tcp://127.0.0.1:{port}", progress=False, timeout_s=2,
                  say=lambda m: None)
    assert list(out.iterdir()) == []  # no summary, no case folder, no log


@pytest.mark.parametrize("text, message", [
    ("id,a\nx,t1.nrrd\n", "lacks the column(s) b"),
    ("id,a,b,colour\nx,t1.nrrd,t2.nrrd,hot\n", "unknown column(s) 'colour'"),
    ("id,a,b\n", "lists no cases"),
    ("id,a,b\nCase1,t1.nrrd,t2.nrrd\ncase1,t1.nrrd,t2.nrrd\n", "appears on lines 2 and 3"),
    ("id,a,b\n../up,t1.nrrd,t2.nrrd\n", "ids name output folders"),
    ("id,a,b\nx,t1.nrrd,t2.nrrd,extra\n", "has 4 values for 3 columns"),
    ("", "is empty"),
])
def test_malformed_cohort_is_one_input_error_and_runs_nothing(tmp_path, text, message):
    path = tmp_path / "cohort.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_batch(path, tmp_path / "out", DEFAULTS, progress=False)
    assert not (tmp_path / "out").exists()


def test_rows_with_bad_settings_fail_alone(cohort, tmp_path):
    path = tmp_path / "cohort.csv"
    folder = cohort.parent
    path.write_text(f"id,a,b,method,preset_b,edges\n"
                    f"ok,{folder / 't1.nrrd'},{folder / 't2.nrrd'},laplacian[levels=3],mr,no\n"
                    f"m,{folder / 't1.nrrd'},{folder / 't2.nrrd'},nosuch,,\n"
                    f"p,{folder / 't1.nrrd'},{folder / 't2.nrrd'},,pet:1,\n"
                    f"e,{folder / 't1.nrrd'},{folder / 't2.nrrd'},,,maybe\n"
                    f"o,{folder / 't1.nrrd'},{folder / 't2.nrrd'},average[levels=3],,\n")
    specs = read_cohort(path, DEFAULTS)
    assert specs[0].error is None and specs[0].method == "laplacian" and specs[0].options == {"levels": 3}
    assert "Unknown fusion method 'nosuch'" in specs[1].error
    assert "Unknown intensity preset" in specs[2].error
    assert specs[3].error == "The edges column must be yes or no, not 'maybe'."
    assert "has no option 'levels'" in specs[4].error
    # A rejected row still gets its log and a failed record, without any fusion.
    record = run_case(specs[1], str(tmp_path / "out"), settings_hash(specs[1]))
    assert record.status == "failed" and record.error == specs[1].error
    assert specs[1].error in (tmp_path / "out" / "m" / "log.txt").read_text()
    assert sorted(p.name for p in (tmp_path / "out" / "m").iterdir()) == ["log.txt"]


def test_outputs_follow_the_settings_and_the_manifest_is_written_last(cohort, tmp_path, restore_threads):
    folder, out = cohort.parent, tmp_path / "out"
    spec = CaseSpec(id="c", a=str(folder / "t1.nrrd"), b=str(folder / "t2.nrrd"), method="average", edges=True)
    assert run_case(spec, str(out), settings_hash(spec)).status == "ok"
    assert sorted(p.name for p in (out / "c").iterdir()) == ["case.json", "edges.nrrd", "fused.nrrd", "log.txt"]

    # Without edges now: the stale edges file goes, the manifest lists only what is there.
    plain = CaseSpec(id="c", a=spec.a, b=spec.b, method="average", edges=False)
    assert run_case(plain, str(out), settings_hash(plain)).status == "ok"
    manifest = json.loads((out / "c" / "case.json").read_text())
    assert set(manifest["outputs"]) == {"fused"} and not (out / "c" / "edges.nrrd").exists()
    assert manifest["settings_hash"] == settings_hash(plain) != settings_hash(spec)

    # A failed re-run (here B has gone missing) keeps the previous outputs and their manifest intact.
    kept = (out / "c" / "fused.nrrd").read_bytes(), (out / "c" / "case.json").read_text()
    gone = CaseSpec(id="c", a=spec.a, b=str(folder / "missing.nrrd"), method="average")
    record = run_case(gone, str(out), settings_hash(gone))
    assert record.status == "failed" and record.error == f"File '{folder / 'missing.nrrd'}' does not exist."
    assert ((out / "c" / "fused.nrrd").read_bytes(), (out / "c" / "case.json").read_text()) == kept
    assert not list((out / "c").glob(".staging-*"))
