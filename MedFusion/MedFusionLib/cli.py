"""The ``medfusion`` command line: fuse, evaluate, batch (in batch/cli.py), methods, demo, doctor (and --version).

Errors a user can fix print one sentence on stderr and exit with status 2; no partial output file remains.
"""
from __future__ import annotations

import os

from .openmp import let_idle_threads_sleep

let_idle_threads_sleep()  # before torch loads OpenMP (openmp.py says why)

import argparse  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import List, Optional  # noqa: E402

from .acceleration import PRECISIONS  # noqa: E402
from .batch.cli import add_parser as add_batch_parser  # noqa: E402
from .doctor import VersionAction, run as run_doctor  # noqa: E402
from .errors import Cancelled, InputError, MedFusionError  # noqa: E402
from .functional_colour import COLOUR_MODES  # noqa: E402
from .held_signals import HELD_SIGNALS, SignalHold  # noqa: E402
from .intensity import PRESET_HELP  # noqa: E402
from .methods import DEFAULT_METHOD, REGISTRY  # noqa: E402
from .methods.registry import options_help, parse_options  # noqa: E402
from .quiet import restore_native_stderr  # noqa: E402

EXIT_USAGE = 2
DEMO_CT_WINDOW = "ct:brain"  # the head phantom's brain and lesion (28-55 HU); the bone window hides them
EXIT_INTERRUPTED = 130


class _ProgressBar:
    """A tqdm bar created on the first callback, when the number of slices is known."""

    def __init__(self, enabled: bool, label: str):
        self.enabled, self.label, self.bar, self.done = enabled, label, None, 0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="slice", desc=self.label, file=sys.stderr, leave=False)
        self.bar.update(done - self.done)
        self.done = done

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _warn(message: str) -> None:
    print(f"medfusion: warning: {message}", file=sys.stderr)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


# Held from the moment every output is in place to the end of main(): a Ctrl-C while the summary is printed must
# not report "nothing was written" over complete files.
_OUTPUTS_FINAL: List[SignalHold] = []


def _write_outputs(items) -> List[str]:
    """Write (image or writer function, planned output) pairs all or nothing (safe_write.py); returns warnings."""
    from .safe_write import write_all

    written = write_all(items)
    _OUTPUTS_FINAL.append(SignalHold(deliver=False).start())
    return written


def cmd_fuse(args) -> int:
    import dataclasses

    from .engine import fuse
    from .output_plan import plan_outputs
    from .settings import FusionSettings
    from .volume_io import display_name, read_volume

    # Every setting checked once, here, before any file is read (settings.py).
    settings = FusionSettings.create(
        method=args.method, method_options=parse_options(REGISTRY.get(args.method), args.option), axis=args.axis,
        preset_a=args.preset_a, preset_b=args.preset_b, device=args.device, batch_size=args.batch,
        edges=bool(args.edges), edge_thresholds=args.edge_thresholds, colormap_a=args.colormap_a,
        colormap_b=args.colormap_b, colour_mode=args.colour_mode, precision=args.precision, compile=args.compile,
        edge_detail=args.edge_detail, check_registration=not args.no_registration_check)
    warnings: List[str] = []
    if _same_file(args.a, args.b):
        _warn(f"'{args.a}' is given twice: the fused image is that image alone.")
    a = read_volume(args.a, warnings)
    b = read_volume(args.b, warnings)
    # Every output against the inputs, each other and its formats, before any work (output_plan.py).
    planned = {p.role: p for p in plan_outputs([("fused", args.output), ("edges", args.edges),
                                                ("preview", args.preview)], [args.a, args.b], a.GetDimension())}
    name_a, name_b = display_name(args.a), display_name(args.b)
    if name_a == name_b:  # e.g. MRI/41030.png and PET/41030.png: say which is which by their folders
        name_a, name_b = (f"{Path(p).resolve().parent.name}/{n}" for p, n in ((args.a, name_a), (args.b, name_b)))
    preview_slices = None
    if args.preview:
        from .preview import check_slices, parse_slices

        preview_slices = parse_slices(args.preview_slice)
        check_slices(a, preview_slices)
    bar = _ProgressBar(not args.quiet, "fusing")
    try:
        result = fuse(a, b, dataclasses.replace(settings, name_a=name_a, name_b=name_b), progress=bar)
    finally:
        bar.close()
    items = [(result.fused, planned["fused"])] + ([(result.edges, planned["edges"])] if args.edges else [])
    if args.preview:
        from .preview import save_preview

        items.append((lambda path: save_preview(a, b, result, path, titles=(name_a, name_b),
                                                colormap_b=args.colormap_b, slices=preview_slices),
                      planned["preview"]))
    written_warnings = _write_outputs(items)
    for message in warnings + result.warnings + written_warnings:
        _warn(message)
    written = " + ".join(str(p.path) for _, p in items)
    checked = "" if result.registration_offset_mm is None else \
        f" (registration check: '{name_b}' about {result.registration_offset_mm:.1f} mm from '{name_a}')"
    print(f"medfusion: {name_a} + {name_b}: {result.summary()} -> {written}{checked}")
    return 0


def cmd_methods(args) -> int:
    from .methods.families import grouped_by_family

    for number, (family, infos) in enumerate(grouped_by_family(REGISTRY)):
        if number:
            print()
        print(family)
        for info in infos:
            default = " (default)" if info.name == DEFAULT_METHOD else ""
            print(f"  {info.name:<12} {info.title}{default} [{info.kind}]: {info.summary}")
            print(f"  {'':<12} Reference: {info.reference}")
            for name, option in info.options.items():
                print(f"  {'':<12} --option {name}={option.default!r} ({option.describe()}): {option.help}")
    return 0


def cmd_demo(args) -> int:
    from .engine import fuse_volumes
    from .phantom import make_head_phantom
    from .preview import save_preview

    from .output_plan import plan_outputs

    if not (0.05 <= args.scale <= 4.0):  # written this way, nan fails too
        raise InputError(f"--scale must be between 0.05 and 4, not {args.scale:g}.")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out '{out}' is a file; give a folder (created if missing).")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"Cannot create the output folder '{out}' ({error.strerror or error}).") from None
    names = {"ct": "phantom_ct.nrrd", "mr": "phantom_mr.nrrd", "fused": "fused.nrrd", "edges": "edges.nrrd",
             "preview": "preview.png"}
    planned = plan_outputs([({"ct": "volume", "mr": "volume"}.get(k, k), out / n) for k, n in names.items()])
    planned = dict(zip(names, planned))
    started = time.perf_counter()
    print(f"medfusion demo: generating the head phantom (CT and MR on different grids) in {out}/ ...")
    phantom = make_head_phantom(modalities=("ct", "mr"), scale=args.scale)
    bar = _ProgressBar(True, "fusing")
    try:
        result = fuse_volumes(phantom["ct"], phantom["mr"], method=args.method, preset_a=DEMO_CT_WINDOW,
                              preset_b="mr", device=args.device, edges=True, progress=bar, name_a="CT", name_b="MR")
    finally:
        bar.close()
    images = {"ct": phantom["ct"], "mr": phantom["mr"], "fused": result.fused, "edges": result.edges,
              "preview": lambda path: save_preview(phantom["ct"], phantom["mr"], result, path, titles=("CT", "MR"))}
    written_warnings = _write_outputs([(images[name], planned[name]) for name in names])
    for message in result.warnings + written_warnings:
        _warn(message)
    print(f"medfusion demo: CT + MR: {result.summary()}; windows: CT {result.windows['A'].how}, "
          f"MR {result.windows['B'].how}")
    for name in names:
        print(f"  {name:<8} {planned[name].path}")
    print(f"medfusion demo: done in {time.perf_counter() - started:.1f} s")
    return 0


def cmd_evaluate(args) -> int:
    from .evaluation import evaluate, parse_list, progress

    if args.threads is not None:
        import torch

        if args.threads < 1:
            raise InputError(f"--threads must be at least 1, not {args.threads}.")
        torch.set_num_threads(args.threads)
    _, paths = evaluate(
        args.out, pairs_dir=args.pairs_dir, volumes=args.volumes, methods=parse_list(args.methods, "methods"),
        metrics=parse_list(args.metrics, "metrics"), folders=parse_list(args.folders, "folders"),
        cases=_cases_of(args), every=args.every, limit=args.limit, axis=args.axis,
        preset_a=args.preset_a, preset_b=args.preset_b, device=args.device, batch_size=args.batch,
        precision=args.precision, jobs=args.jobs,
        save_fused=args.save_fused, say=lambda m: progress.write(f"medfusion evaluate: {m}"), warn=_warn,
        progress_bars=not args.quiet, protocol=args.protocol, command=_evaluate_command(args))
    for name, path in paths.items():
        print(f"  {name:<9} {path}")
    return 0


def _cases_of(args):
    """--cases (the same ids in every folder) or --split val (each folder's held-out cases of data_split)."""
    from .evaluation import parse_cases

    if args.split and args.cases:
        raise InputError("Give either --cases or --split, not both.")
    if args.split == "val":
        from .data_split import VALIDATION_CASES

        return {folder: set(cases) for folder, cases in VALIDATION_CASES.items()}
    return parse_cases(args.cases)


def _evaluate_command(args) -> str:
    """The evaluation's effective options as one command line (for the report header)."""
    import shlex

    words = ["medfusion", "evaluate"]
    words += [args.pairs_dir] if args.pairs_dir else []
    words += ["--volumes", *args.volumes] if args.volumes else []
    for flag, value in (("--methods", args.methods), ("--metrics", args.metrics),
                        ("--protocol", None if args.protocol == "medfusion" else args.protocol), ("--folders", args.folders),
                        ("--cases", args.cases), ("--split", args.split),
                        ("--every", args.every if args.every != 1 else None),
                        ("--limit", args.limit), ("--axis", args.axis if args.volumes else None),
                        ("--preset-a", None if args.preset_a == "auto" else args.preset_a),
                        ("--preset-b", None if args.preset_b == "auto" else args.preset_b),
                        ("--device", args.device), ("--batch", args.batch),
                        ("--precision", None if args.precision == "fp32" else args.precision), ("--threads", args.threads),
                        ("--jobs", args.jobs if args.jobs != 1 else None), ("--out", args.out)):
        if value is not None:
            words += [flag, str(value)]
    if args.save_fused:
        words.append("--save-fused")
    return shlex.join(str(w) for w in words)


def _add_evaluate_parser(sub) -> None:
    evaluate = sub.add_parser(
        "evaluate", help="fuse, time and score methods on a folder of image pairs or on two volumes",
        description="Fuse every pair with every method (through the same engine as 'fuse'), time the method per "
                    "slice and score each result with the 17 objective metrics. Writes OUT/results.csv, "
                    "OUT/results.md (mean ± sd per modality pair and overall, best in bold), OUT/charts/*.png and "
                    "OUT/montage.png. Colour PET/SPECT pairs are scored on luminance Y (BT.601).")
    evaluate.add_argument("pairs_dir", nargs="?", metavar="PAIRS_DIR",
                          help="folder of modality-pair folders (e.g. CT-MRI/ holding CT/ and MRI/ with same-named "
                               "images), or one such folder")
    evaluate.add_argument("--volumes", nargs=2, metavar=("A", "B"),
                          help="instead of PAIRS_DIR: two volumes, B resampled onto A; scored slice by slice")
    evaluate.add_argument("--methods", default="classic",
                          help="comma-separated methods, or 'classic' / 'all' (default classic)")
    evaluate.add_argument("--out", required=True, help="output folder (created if missing)")
    evaluate.add_argument("--save-fused", action="store_true",
                          help="also write every fused image to OUT/fused/<method>/<pair>/<name>.png (8-bit)")
    evaluate.add_argument("--metrics", help="comma-separated subset of the protocol's metrics (default all)")
    evaluate.add_argument("--protocol", default="medfusion", choices=("medfusion", "cddfuse"),
                          help="scoring protocol: medfusion (our 17 metrics, default) or cddfuse (EN, SD, SF, MI, SCD, "
                               "VIF, Qabf, SSIM as CDDFuse's scorer computes them, on 8-bit grey images)")
    evaluate.add_argument("--folders", help="comma-separated modality-pair folders to use (default all)")
    evaluate.add_argument("--cases", help="comma-separated case ids: the leading digits of a file name before its "
                                          "3-digit slice index (28013.png is case 28)")
    evaluate.add_argument("--split", choices=("val",),
                          help="only the validation cases held out from training (MedFusionLib.data_split: "
                               "case 41 of CT-MRI and PET-MRI, 29 of SPECT-MRI)")
    evaluate.add_argument("--every", type=int, default=1, metavar="K",
                          help="every K-th image of each folder (or scored slice of a volume)")
    evaluate.add_argument("--limit", type=int, metavar="N",
                          help="the first N images of each folder in natural order (volumes: N slices evenly "
                               "spaced among those with content in both)")
    evaluate.add_argument("--axis", default="axial", choices=("axial", "coronal", "sagittal"),
                          help="slicing plane for --volumes (default axial)")
    evaluate.add_argument("--preset-a", default="auto", help="intensity mapping of A (as for 'fuse')")
    evaluate.add_argument("--preset-b", default="auto", help="intensity mapping of B (as for 'fuse')")
    evaluate.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    evaluate.add_argument("--batch", type=int, default=None, help="slices per batch (default 8 on CPU, 32 on GPU)")
    evaluate.add_argument("--precision", default="fp32", choices=PRECISIONS,
                          help="precision the networks run in (default fp32: scored as written; auto: as 'fuse' "
                               "runs them, e.g. int8 MFEnet, which some metrics such as FMI_pixel score lower)")
    evaluate.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    evaluate.add_argument("--jobs", type=int, default=1, help="processes scoring the metrics (default 1)")
    evaluate.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    evaluate.set_defaults(handler=cmd_evaluate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medfusion", description="Fuse two co-registered medical volumes "
                                     "(CT, MR, PET, SPECT) with deep or classic methods.")
    parser.add_argument("--version", action=VersionAction)
    sub = parser.add_subparsers(dest="command", required=True)

    fuse = sub.add_parser("fuse", help="fuse B into A's geometry",
                          description="Fuse volume (or 2D image) B into the geometry of A. B is resampled onto "
                                      "A's grid in physical space; the output has A's origin, spacing and direction.")
    fuse.add_argument("a", help="reference volume/image (file or DICOM folder); the output takes its geometry")
    fuse.add_argument("b", help="second volume/image, resampled onto A")
    fuse.add_argument("-o", "--output", required=True, help="fused output (.nrrd .nii .nii.gz .mha .mhd; "
                                                            ".png/.tif for 2D)")
    fuse.add_argument("--method", default=DEFAULT_METHOD, help=f"fusion method (default {DEFAULT_METHOD}); "
                                                               f"see 'medfusion methods'")
    fuse.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                      help=f"method option (repeatable), e.g. --option levels=5; the options and their defaults: "
                           f"{options_help(REGISTRY)} (types and ranges: 'medfusion methods')")
    fuse.add_argument("--axis", default="axial", choices=("axial", "coronal", "sagittal"),
                      help="slicing plane, relative to A's anatomy (default axial)")
    fuse.add_argument("--preset-a", default="auto", help=f"intensity mapping of A: {PRESET_HELP} (default auto)")
    fuse.add_argument("--preset-b", default="auto", help="intensity mapping of B (same choices)")
    fuse.add_argument("--colormap-a", metavar="NAME", help="colour a scalar functional A (e.g. hot): it is fused "
                                                             "through YCbCr and the output is RGB")
    fuse.add_argument("--colormap-b", metavar="NAME", help="colour a scalar functional B, e.g. PET in SUV with hot")
    fuse.add_argument("--colour-mode", default="auto", choices=COLOUR_MODES,
                      help="how the functional colour is shown: overlay (thresholded colour on the grey fusion; "
                           "auto for luminance-encoded maps such as hot), ycbcr (fuse Y, keep the colour; auto for "
                           "hue-encoded maps such as rainbow and for RGB images) (default auto)")
    fuse.add_argument("--edges", metavar="EDGES_OUT", help="also write the 3D Canny edge labelmap "
                                                           "(1 = A, 2 = B, 3 = both)")
    fuse.add_argument("--edge-detail", type=float, default=None, metavar="0..1",
                      help="fewer (0) or more (1) edges: about 1%%, 3%%, 9%% of each source's foreground "
                           "(default 0.5, the middle)")
    fuse.add_argument("--edge-thresholds", nargs=2, type=float, metavar=("LOW", "HIGH"),
                      help="fixed 3D Canny thresholds (normalised intensity per mm of the smoothed source) "
                           "instead of --edge-detail's automatic ones")
    fuse.add_argument("--no-registration-check", action="store_true",
                      help="skip the check of B's residual shift against A (a rigid MI translation estimate)")
    fuse.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    fuse.add_argument("--batch", type=int, default=None, help="slices per batch (default 8 on CPU, 32 on GPU)")
    fuse.add_argument("--precision", default="auto", choices=PRECISIONS,
                      help="networks' arithmetic: auto (fp16 on CUDA; on the CPU int8 for MFEnet, bf16 for the "
                           "others where bf16 is native, else fp32; only where the method passes the accuracy "
                           "guard), fp32, bf16, fp16, int8 (MFEnet on the CPU) (default auto)")
    fuse.add_argument("--compile", action="store_true",
                      help="try torch.compile for networks (falls back to eager mode if it fails)")
    fuse.add_argument("--preview", metavar="PNG", help="also write a PNG preview of three orthogonal slices")
    fuse.add_argument("--preview-slice", metavar="SPEC",
                      help="slice of the preview: a fraction of each view (0.3) or indices (axial=20,coronal=100); "
                           "default the centre")
    fuse.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    fuse.set_defaults(handler=cmd_fuse)

    _add_evaluate_parser(sub)
    add_batch_parser(sub, DEFAULT_METHOD, PRESET_HELP, PRECISIONS)

    methods = sub.add_parser("methods", help="list the fusion methods and their references")
    methods.set_defaults(handler=cmd_methods)

    doctor = sub.add_parser("doctor", help="versions, CPU/GPU, the precision 'auto' picks, weights checks: "
                                           "paste its output into a bug report")
    doctor.set_defaults(handler=lambda args: run_doctor())

    demo = sub.add_parser("demo", help="fuse the built-in CT/MR head phantom and write a preview")
    demo.add_argument("--out", default="medfusion-demo", help="output folder (default ./medfusion-demo)")
    demo.add_argument("--method", default=DEFAULT_METHOD)
    demo.add_argument("--device", default="auto")
    demo.add_argument("--scale", type=float, default=1.0, help="grid scale (< 1 for a quicker, coarser phantom)")
    demo.set_defaults(handler=cmd_demo)
    return parser


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM (kill, a scheduler) unwinds like Ctrl-C: staged outputs are discarded


def _say(message: str) -> None:
    restore_native_stderr()  # an interruption may have skipped the exit of a library-silencing block
    print(message, file=sys.stderr)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        previous = signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread: leave signals to the host
        previous = None
    try:
        return args.handler(args)
    except Cancelled as error:
        _say(f"medfusion: {error}")
        return EXIT_INTERRUPTED
    except MedFusionError as error:
        _say(f"medfusion: error: {error}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        _say("medfusion: interrupted; nothing was written.")
        return EXIT_INTERRUPTED
    except MemoryError:
        _say("medfusion: error: out of memory; nothing was written.")
        return EXIT_USAGE
    except BrokenPipeError:  # e.g. `medfusion methods | head`: the reader left, which is not an error
        sys.stdout = open(os.devnull, "w")
        return 0
    finally:
        while _OUTPUTS_FINAL:
            _OUTPUTS_FINAL.pop().release()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def command() -> None:
    """The ``medfusion`` command: main(), then an exit that a late Ctrl-C or kill cannot turn into a traceback or
    a signal death: every output is final by now, so a signal during the interpreter's shutdown is dropped."""
    code = main()
    for number in HELD_SIGNALS:  # ignored, not handled: Python's shutdown resets handlers, never SIG_IGN
        signal.signal(number, signal.SIG_IGN)
    sys.exit(code)


if __name__ == "__main__":
    command()
