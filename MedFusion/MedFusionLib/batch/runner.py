"""Run a cohort on Dask distributed: a LocalCluster on this machine by default, or any scheduler address.

Each case is one task. Workers run one case at a time: a local cluster's workers have one thread and one
``case`` resource each, and tasks ask for that resource, so a worker of a real cluster started with more
threads still takes one case at a time when it declares ``--resources case=1``. Each case limits torch,
OpenCV and SimpleITK to its share of the cores (``threads``), so workers do not oversubscribe them.
"""
from __future__ import annotations

import os
import sys
import uuid
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from ..errors import InputError
from ..openmp import IDLE_THREADS_SLEEP
from .case import LOG_NAME, run_case
from .cohort import CaseSpec, read_cohort
from .manifest import settings_hash, up_to_date
from .summary import FAILED, NOT_RUN, SKIPPED, CaseRecord, write_summary

RESOURCE = "case"
# Environment of local worker processes: idle OpenMP threads sleep (openmp.py). Dask's nanny itself sets
# OMP_NUM_THREADS=1 (and MKL/OpenBLAS) in workers; each case then sets its own share (case.limit_threads).
_WORKER_ENV = dict(IDLE_THREADS_SLEEP)
Connection = Tuple[object, Optional[dict], Optional[int]]  # client, task resources, threads per case


@dataclass
class BatchReport:
    records: List[CaseRecord]
    summary: Path

    @property
    def failed(self) -> List[CaseRecord]:
        return [r for r in self.records if not r.succeeded]

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.records)


def default_workers(cases: int) -> int:
    """One worker per two cores (each case gets two threads), at least one, never more workers than cases."""
    return max(1, min(cases, (os.cpu_count() or 1) // 2))


@contextmanager
def _local_client(workers: int, processes: bool, threads: Optional[int], memory_limit) -> Iterator[Connection]:
    import dask
    from distributed import Client, LocalCluster

    # Everything listens on loopback only, over TCP even for threads (Dask's in-process transport would open its
    # HTTP endpoints on every interface); the scheduler's HTTP endpoint takes a free port, not 8787. Worker
    # processes get the environment above; one past its memory limit is restarted by its nanny, and the case it
    # was fusing gets one more try, then fails.
    spawned = {"env": _WORKER_ENV, "memory_limit": memory_limit} if processes else {}
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), \
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes, resources={RESOURCE: 1},
                         host="127.0.0.1", protocol="tcp://", dashboard_address=None,
                         scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}, **spawned) as cluster, \
            Client(cluster) as client:
        yield client, {RESOURCE: 1}, threads or max(1, (os.cpu_count() or 1) // workers)


@contextmanager
def _remote_client(address: str, threads: Optional[int], say: Callable[[str], None],
                   timeout_s: float) -> Iterator[Connection]:
    from distributed import Client

    try:
        client = Client(address, timeout=f"{timeout_s}s")
    except (OSError, TimeoutError, ValueError) as error:
        raise InputError(f"Cannot reach the Dask scheduler at '{address}' ({error}); start it with "
                         f"'dask scheduler' and give its address.") from None
    try:
        try:
            client.wait_for_workers(1, timeout=timeout_s)
        except TimeoutError:
            raise InputError(f"No Dask worker joined the scheduler at '{address}' within {timeout_s:g} s; "
                             f"start one with 'dask worker {address} --nthreads 1 --resources {RESOURCE}=1'.") from None
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        if any(RESOURCE in (w.get("resources") or {}) for w in workers):
            yield client, {RESOURCE: 1}, threads
            return
        busy = [w for w in workers if w.get("nthreads", 1) > 1]
        if busy:
            say(f"warning: {len(busy)} worker(s) run several threads and declare no '{RESOURCE}' resource, so they "
                f"may fuse several cases at once; start workers with --resources {RESOURCE}=1 to bound memory.")
        yield client, None, threads
    finally:
        client.close()


def _plan(specs: List[CaseSpec], out: Path, force: bool) -> Tuple[Dict[str, CaseRecord], List[Tuple[CaseSpec, str]]]:
    """Records of the cases that need no worker (up to date) and the (spec, settings hash) pairs to run."""
    done: Dict[str, CaseRecord] = {}
    to_run = []
    for spec in specs:
        digest = settings_hash(spec)
        manifest = None if (force or spec.error) else up_to_date(out / spec.id, digest)
        if manifest is None:
            to_run.append((spec, digest))
            continue
        case_dir = out / spec.id
        done[spec.id] = CaseRecord(
            id=spec.id, status=SKIPPED, method=spec.method, seconds=manifest.get("seconds"),
            overlap=manifest.get("overlap"), registration_offset_mm=manifest.get("registration_offset_mm"),
            warnings=list(manifest.get("warnings", [])), settings_hash=digest, log=str(case_dir / LOG_NAME),
            outputs={key: str(case_dir / entry["file"]) for key, entry in manifest.get("outputs", {}).items()})
    return done, to_run


def _lost_case(spec: CaseSpec, digest: str, out: Path, error: BaseException) -> CaseRecord:
    """The task itself failed (its worker died, or could not load MedFusion): one sentence in the summary, Dask's
    full message in the case log."""
    from datetime import datetime, timezone

    from distributed import KilledWorker

    if isinstance(error, KilledWorker):
        message = ("The Dask worker fusing this case died on every try (out of memory, or killed); see the case "
                   "log and the workers' logs.")
    else:
        message = f"The Dask worker could not run this case ({type(error).__name__}); see the case log."
    case_dir = out / spec.id
    case_dir.mkdir(parents=True, exist_ok=True)
    with open(case_dir / LOG_NAME, "a", encoding="utf-8") as log:
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        log.write(f"{stamp} failed on the cluster: {type(error).__name__}: {error}\n")
    return CaseRecord(id=spec.id, status=FAILED, method=spec.method, error=message, settings_hash=digest,
                      log=str(case_dir / LOG_NAME))


def _check_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError:
        raise InputError(f"Output folder '{out}' cannot be created.") from None
    if not os.access(out, os.W_OK):
        raise InputError(f"Output folder '{out}' is not writable.")


def _check_memory_limit(memory_limit) -> None:
    from dask.utils import parse_bytes

    if memory_limit in (None, "auto") or isinstance(memory_limit, (int, float)):
        return
    try:
        parse_bytes(memory_limit)
    except (ValueError, TypeError):
        raise InputError(f"Memory limit '{memory_limit}' is not a size such as 6GB or 500MB.") from None


def run_batch(cohort, out_dir, defaults: CaseSpec, scheduler: Optional[str] = None, workers: Optional[int] = None,
              threads: Optional[int] = None, force: bool = False, progress: bool = True, processes: bool = True,
              say: Callable[[str], None] = print, timeout_s: float = 60, memory_limit="auto") -> BatchReport:
    """Fuse every case of the cohort file into ``out_dir/<id>/`` and write ``out_dir/summary.csv``.

    ``scheduler``: a Dask scheduler address (``tcp://host:8786``); None starts a LocalCluster of ``workers``
    workers (``processes=False``: threads of this process, for tests). ``threads``: cores per case (default
    on a local cluster: this machine's cores / workers; on a remote one, what each worker's environment sets).
    ``memory_limit``: per local worker process (Dask's syntax, e.g. "6GB"; "auto" = this machine's memory /
    workers).
    Cases whose outputs match their recorded settings are skipped unless ``force``. ``timeout_s``: how long to
    wait for a remote scheduler to answer and for its first worker to join.
    """
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be at least 1, not {workers}.")
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be at least 1, not {threads}.")
    _check_memory_limit(memory_limit)
    specs = read_cohort(cohort, defaults)
    out = Path(out_dir).expanduser().resolve()  # workers may run elsewhere: give them absolute paths
    _check_out(out)
    records, to_run = _plan(specs, out, force)
    rejected = [(spec, digest) for spec, digest in to_run if spec.error]
    runnable = [(spec, digest) for spec, digest in to_run if not spec.error]
    if not runnable:
        connection = nullcontext((None, None, None))
    elif scheduler:
        if workers is not None:
            say(f"warning: --workers applies to the local cluster only; the scheduler at '{scheduler}' uses the "
                f"workers that joined it.")
        connection = _remote_client(scheduler, threads, say, timeout_s)
    else:
        connection = _local_client(workers or default_workers(len(runnable)), processes, threads, memory_limit)
    with connection as (client, resources, per_case_threads):  # cannot connect: nothing is written
        for spec, digest in rejected:  # rows rejected when the cohort was read: no worker needed
            records[spec.id] = run_case(spec, str(out), digest)
        if records:
            say(f"{sum(r.status == SKIPPED for r in records.values())} case(s) up to date, {len(rejected)} "
                f"rejected, {len(runnable)} to fuse")
        try:
            if runnable:
                _run_on_dask(client, resources, per_case_threads, runnable, out, progress, records)
        finally:  # also when interrupted: finished cases are kept and listed, the rest are "not run"
            ordered = [records.get(s.id) or CaseRecord(id=s.id, status=NOT_RUN, method=s.method) for s in specs]
            summary = write_summary(out / "summary.csv", ordered)
    return BatchReport(ordered, summary)


def _slots(client, resources: Optional[dict]) -> int:
    """How many cases the cluster runs at once now: its ``case`` resources, else its threads."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    if resources:
        return max(1, int(sum((w.get("resources") or {}).get(RESOURCE, 0) for w in workers)))
    return max(1, sum(w.get("nthreads", 1) for w in workers))


def _run_on_dask(client, resources, threads, to_run, out: Path, progress: bool, records: Dict[str, CaseRecord]):
    """One task per case, with a progress bar over cases.

    Only as many tasks as the cluster has slots are out at a time (the next is submitted when one finishes):
    Dask would otherwise queue cases on workers, and a worker that dies counts against every case queued on it,
    so one case that kills its worker could fail others. The slots are counted again as cases finish, so
    workers that join later are used."""
    from distributed import as_completed
    from tqdm import tqdm

    pending, in_flight, finished = list(to_run), {}, as_completed()

    def submit_more():
        free = _slots(client, resources) - len(in_flight)
        while pending and free > 0:
            spec, digest = pending.pop(0)
            future = client.submit(run_case, spec, str(out), digest, threads, resources=resources,
                                   key=f"medfusion-case-{spec.id}-{uuid.uuid4().hex[:12]}", pure=False, retries=0)
            in_flight[future] = (spec, digest)
            finished.add(future)
            free -= 1

    submit_more()
    with tqdm(total=len(to_run), unit="case", desc="cases", file=sys.stderr, disable=not progress) as bar:
        failed = 0
        for future in finished:
            spec, digest = in_flight.pop(future)
            try:
                record = future.result()
            except Exception as error:  # noqa: BLE001 - any task failure is this case's failure only
                record = _lost_case(spec, digest, out, error)
            future.release()  # the record is here now: a worker lost later must not make Dask redo the case
            records[spec.id] = record
            failed += not record.succeeded
            bar.set_postfix(failed=failed, refresh=False)
            bar.update(1)
            submit_more()
