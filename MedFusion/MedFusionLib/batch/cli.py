"""The ``medfusion batch`` subcommand: its options (defaults for every cohort row) and its exit status."""
from __future__ import annotations

import sys

from ..errors import InputError
from ..methods import REGISTRY
from ..methods.registry import options_help

EXIT_FAILED_CASES = 2
EXIT_INTERRUPTED = 130


def add_parser(sub, method_default: str, preset_help: str, precisions) -> None:
    batch = sub.add_parser(
        "batch", help="fuse a cohort (one CSV row per case) on Dask: this machine by default, or a cluster",
        description="Fuse every case of COHORT.csv (columns id, a, b; optional method, preset_a, preset_b, "
                    "colormap_a, colormap_b, edges, preview, whose empty cells take the options below) into "
                    "DIR/<id>/fused.nrrd (+ edges.nrrd, preview.png), with a log per case and DIR/summary.csv. "
                    "A re-run skips cases whose outputs match their recorded settings. Exit status 0 when every "
                    "case succeeded, else 2.")
    batch.add_argument("cohort", metavar="COHORT.csv", help="one row per case; relative paths are relative to it")
    batch.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    batch.add_argument("--scheduler", metavar="ADDRESS",
                       help="a running Dask scheduler (e.g. tcp://10.0.0.5:8786); default: a local cluster")
    batch.add_argument("--workers", type=int, metavar="N",
                       help="local cluster only: worker processes, one case each at a time (default: cores / 2)")
    batch.add_argument("--threads", type=int, metavar="N",
                       help="cores per case (default: cores / workers locally; the workers' own setting on a "
                            "cluster)")
    batch.add_argument("--memory-limit", default="auto", metavar="SIZE",
                       help="local cluster only: memory per worker, e.g. 6GB; a worker past it is restarted and its "
                            "case retried once (default auto: this machine's memory / workers)")
    batch.add_argument("--force", action="store_true", help="redo cases even when their outputs are up to date")
    batch.add_argument("--method", default=method_default, help=f"default method (default {method_default})")
    batch.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                       help="option of the default method (repeatable); a row's method takes NAME[KEY=VALUE,...]; "
                            f"the options and their defaults: {options_help(REGISTRY)}")
    batch.add_argument("--preset-a", default="auto", help=f"default intensity mapping of A: {preset_help}")
    batch.add_argument("--preset-b", default="auto", help="default intensity mapping of B")
    batch.add_argument("--colormap-a", metavar="NAME", help="default colour map of a scalar functional A")
    batch.add_argument("--colormap-b", metavar="NAME", help="default colour map of a scalar functional B (e.g. hot)")
    batch.add_argument("--edges", action="store_true", help="write DIR/<id>/edges.nrrd for every case by default")
    batch.add_argument("--preview", action="store_true", help="write DIR/<id>/preview.png for every case by default")
    batch.add_argument("--edge-thresholds", nargs=2, type=float, metavar=("LOW", "HIGH"),
                       help="Canny thresholds (automatic by default)")
    batch.add_argument("--axis", default="axial", choices=("axial", "coronal", "sagittal"))
    batch.add_argument("--device", default="auto", help="auto, cpu or cuda[:N], on each worker (default auto)")
    batch.add_argument("--batch", type=int, default=None, help="slices per batch (default 8 on CPU, 32 on GPU)")
    batch.add_argument("--precision", default="auto", choices=precisions)
    batch.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    batch.set_defaults(handler=cmd_batch)


def _defaults(args):
    from ..methods import REGISTRY
    from ..methods.registry import parse_options
    from .cohort import CaseSpec, check_settings

    info = REGISTRY.get(args.method)
    spec = CaseSpec(id="", method=info.name, options=parse_options(info, args.option), preset_a=args.preset_a,
                    preset_b=args.preset_b, colormap_a=args.colormap_a, colormap_b=args.colormap_b,
                    edges=args.edges, preview=args.preview, axis=args.axis,
                    edge_thresholds=tuple(args.edge_thresholds) if args.edge_thresholds else None,
                    precision=args.precision, device=args.device, batch_size=args.batch)
    if args.batch is not None and args.batch < 1:
        raise InputError(f"Batch size must be at least 1, not {args.batch}.")
    return check_settings(spec)  # a bad default is the command's error, not every row's


def cmd_batch(args) -> int:
    from .runner import run_batch

    try:
        report = run_batch(args.cohort, args.out, _defaults(args), scheduler=args.scheduler,
                           workers=args.workers, threads=args.threads, force=args.force, progress=not args.quiet,
                           memory_limit=args.memory_limit,
                           say=lambda m: print(f"medfusion batch: {m}", file=sys.stderr, flush=True))
    except KeyboardInterrupt:
        print(f"medfusion batch: interrupted; finished cases are kept (see {args.out}/summary.csv), a re-run "
              f"goes on from there.", file=sys.stderr)
        return EXIT_INTERRUPTED
    for record in report.failed:
        print(f"medfusion batch: case '{record.id}' failed: {record.error or record.status}", file=sys.stderr)
    total, failed = len(report.records), len(report.failed)
    print(f"medfusion batch: {total - failed} of {total} case(s) done ({report.count('skipped')} up to date), "
          f"{failed} failed; summary {report.summary}")
    if failed:
        print(f"medfusion batch: {failed} of {total} case(s) failed; see {report.summary}", file=sys.stderr)
        return EXIT_FAILED_CASES
    return 0
