#!/usr/bin/env python3
"""Fusion speed and memory benchmark: how fast each method fuses real data, and what it costs in memory.

Workloads (all real data from ../shared/data):

* ``volume``: the stroke T1 volume resampled to a 256 x 256 x S grid (S = --slices, default 200) as the
  reference A, the T2 volume on its own grid as B (the engine resamples it, as in real use);
* ``harvard``: the 256 x 256 validation pairs of every modality pair, stacked as one volume of slices;
* ``sts``: the sts_001 CT (198 x 202 x 59) as A and its T1 MR (a smaller field of view, resampled by the
  engine) as B, for the crop's effect on a CT pair (measured: its box covers every slice, README "Performance");
* ``stroke``: the stroke T1 and T2 as they are (140 slices of 160 x 124), the pair issue 19 measured;
* ``clinical``: the sts_001 CT resampled to a clinical 512 x 512 x 300 grid (78.6 M voxels) with its MR, fused
  with the edge overlay on (the default in Slicer and on the command line), and ``clinical-noedges`` the same
  without it: the edges' share of a clinical volume's time.

For each method x device x batch size x precision, every configuration runs in a fresh subprocess (so peak RSS
and CUDA max-allocated belong to it alone) and records slices per second, seconds per volume, peak RSS and,
on CUDA, max allocated. Each method's time is also given as a ratio to pixel-average fusion of the same
workload in the same run, and MFEnet is compared with a naive float32 implementation (a Python loop over
single slices, NCHW, no channels-last, no batching, no cropping, at the engine's default options: how one
writes it first) measured in the same run.

Networks also run without cropping to the anatomy (``crop`` column off; anatomy_crop.py), so the gain of the
crop is measured beside the rest (``crop gain``: the uncropped run's time over the cropped one's).
``--scoring N`` also runs scripts/metrics_speed.py on N Harvard pairs per folder (the evaluation harness's
scoring time per slice and method, frozen old metrics against the current ones) and keeps its report. ``--cpu-classes native,avx2`` repeats everything with torch's kernels capped
at AVX2 (ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2 in the child's environment), emulating an AVX2-only
laptop on a newer CPU; each row records its CPU class and ratios are taken within the class.

``--memory`` also fuses a 512 x 512 x 600 int16 pair (synthetic smooth volumes on two different grids; the
engine's memory does not depend on the content) with pixel averaging and checks that peak RSS stays within
the bound inputs + output (held twice at the very end, see engine.py) + edge labelmap + a fixed allowance
for the interpreter, torch and one batch.

    .venv/bin/python scripts/benchmark.py                       # CPU (and CUDA if present), defaults
    .venv/bin/python scripts/benchmark.py --methods mfenet --batches 1,8,16 --precisions fp32,bf16
    .venv/bin/python scripts/benchmark.py --memory --out reports/benchmark.json
    .venv/bin/python scripts/benchmark.py --methods mfenet --workloads volume --slices 32 --cpu-classes native,avx2
    .venv/bin/python scripts/benchmark.py --methods mfenet --workloads volume,sts --slices 32 --cpu-classes native,avx2 \
        --precisions fp32,auto --scoring 1

It prints a markdown table and writes JSON (--out, default reports/benchmark.json).
"""
from __future__ import annotations

import os

from MedFusionLib.openmp import let_idle_threads_sleep  # noqa: E402

let_idle_threads_sleep()  # before torch loads OpenMP

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
ALLOWANCE_MB = 1200.0  # interpreter + torch + OpenCV + one batch of slices, for the memory bound
EDGE_WEIGHT = 0.0  # MFEnet's default edge weight: the naive loop computes what the engine computes
# Environment caps that make torch's kernels behave as on a CPU of that class (see acceleration.py).
CPU_CLASSES = {"native": {}, "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}}


# ---------------------------------------------------------------------------------------------- workloads
def volume_pair(slices: int):
    """Stroke T1 resampled to 256 x 256 x ``slices`` over its own extent (A) and T2 on its grid (B)."""
    import SimpleITK as sitk

    t1, t2 = stroke_pair()
    size = (256, 256, slices)
    extent = [n * s for n, s in zip(t1.GetSize(), t1.GetSpacing())]
    spacing = [e / n for e, n in zip(extent, size)]
    grid = sitk.Image(size, sitk.sitkFloat32)
    grid.SetDirection(t1.GetDirection())
    grid.SetSpacing(spacing)
    # Keep the physical extent: the first voxel's centre moves by half the change of spacing.
    shift = [0.5 * (new - old) for new, old in zip(spacing, t1.GetSpacing())]
    direction = t1.GetDirection()
    origin = [o + sum(direction[3 * r + c] * shift[c] for c in range(3)) for r, o in enumerate(t1.GetOrigin())]
    grid.SetOrigin(origin)
    a = sitk.Resample(sitk.Cast(t1, sitk.sitkFloat32), grid, sitk.Transform(), sitk.sitkLinear, 0.0)
    return a, t2


def harvard_pair():
    """Every validation pair (256 x 256, functional images through Y) stacked into two volumes."""
    import numpy as np
    import SimpleITK as sitk

    from MedFusionLib.data_split import list_pairs, read_y

    pairs = list_pairs(DATA / "harvard", split="val")
    a = np.stack([read_y(p.path_a) for p in pairs]).astype(np.float32)
    b = np.stack([read_y(p.path_b) for p in pairs]).astype(np.float32)
    return sitk.GetImageFromArray(a), sitk.GetImageFromArray(b)


def shared_volumes(folder: str, reference: str, moving: str):
    """Two volumes of one shared-data case, as read (shared data, never copied)."""
    from MedFusionLib.volume_io import read_volume

    case = DATA / "volumes" / folder
    return read_volume(case / f"{reference}.nii.gz"), read_volume(case / f"{moving}.nii.gz")


def stroke_pair():
    """The stroke T1 (reference) and T2 as they are: 140 slices of 160 x 124, the pair issue 19 measured."""
    return shared_volumes("stroke_T1_T2_FLAIR", "T1", "T2")


def sts_pair():
    """The sts_001 CT (reference) and T1 MR."""
    return shared_volumes("sts_001", "CT", "MR_T1")


def clinical_pair(size=(512, 512, 300)):
    """sts_001's CT resampled (linear) to ``size`` over its own extent, and its T1 MR as read."""
    import SimpleITK as sitk

    ct, mr = sts_pair()
    extent = [n * s for n, s in zip(ct.GetSize(), ct.GetSpacing())]
    grid = sitk.Image(list(size), sitk.sitkInt16)
    grid.SetSpacing([e / n for e, n in zip(extent, size)])
    grid.SetOrigin(ct.GetOrigin())
    grid.SetDirection(ct.GetDirection())
    return sitk.Resample(ct, grid, sitk.Transform(), sitk.sitkLinear, -1000), mr


def big_pair(size=(512, 512, 600)):
    """Two smooth int16 volumes on different grids (B shifted and coarser), for the memory check."""
    import numpy as np
    import SimpleITK as sitk

    nx, ny, nz = size
    x = np.sin(np.linspace(0, 6 * np.pi, nx, dtype=np.float32))
    y = np.cos(np.linspace(0, 4 * np.pi, ny, dtype=np.float32))
    z = np.linspace(0, 1, nz, dtype=np.float32)
    a = np.empty((nz, ny, nx), np.int16)
    for k in range(nz):  # slice by slice: no float volume-sized temporary
        a[k] = (1000 * (z[k] + np.add.outer(y, x))).astype(np.int16)
    image_a = sitk.GetImageFromArray(a)
    del a
    image_a.SetSpacing((0.5, 0.5, 0.5))
    b = np.empty((500, 400, 400), np.int16)
    ramp = np.add.outer(np.linspace(0, 500, 400, dtype=np.float32), np.linspace(0, 300, 400, dtype=np.float32))
    for k in range(500):
        b[k] = (ramp + 2 * k).astype(np.int16)
    image_b = sitk.GetImageFromArray(b)
    del b
    image_b.SetSpacing((0.66, 0.66, 0.6))
    image_b.SetOrigin((-5.0, 3.0, 2.0))
    return image_a, image_b


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


# ------------------------------------------------------------------------------------- one configuration
def naive_mfenet(a, b, device):
    """MFEnet written the first way: a Python loop over single slices, NCHW, float32, no channels-last."""
    import numpy as np
    import SimpleITK as sitk
    import torch

    from MedFusionLib.geometry import slice_layout
    from MedFusionLib.methods import mfenet
    from MedFusionLib.sources import MovingSlabs, ReferenceSlabs, Source

    model = mfenet.load_model(device)
    layout = slice_layout(a, "axial")
    reference = ReferenceSlabs(Source(a, "auto", "A", []), layout)
    moving = MovingSlabs(Source(b, "auto", "B", []), a, layout)
    out = np.zeros(sitk.GetArrayViewFromImage(a).shape, np.float32)
    stack = layout.to_slices(out)
    with torch.no_grad():
        for i in range(stack.shape[0]):
            ta = torch.from_numpy(reference.slab(i, i + 1).luma).unsqueeze(1).to(device)
            tb = torch.from_numpy(moving.slab(i, i + 1).luma).unsqueeze(1).to(device)
            fused = mfenet.edge_enhance(model.fuse_features(ta, tb), ta, tb, EDGE_WEIGHT)
            stack[i] = fused[0, 0].cpu().numpy()
    return stack.shape[0]


def run_one(config: dict) -> dict:
    """Fuse one workload with one configuration in this process; return its measurements."""
    import torch

    from MedFusionLib.engine import fuse_volumes, resolve_device

    if config.get("threads"):
        torch.set_num_threads(config["threads"])
    device = resolve_device(config["device"])
    a, b = {"volume": lambda: volume_pair(config["slices"]), "harvard": harvard_pair, "sts": sts_pair,
            "stroke": stroke_pair, "memory": big_pair, "clinical": clinical_pair,
            "clinical-noedges": clinical_pair}[config["workload"]]()
    input_mb = sum(img.GetNumberOfPixels() * img.GetSizeOfPixelComponent() * img.GetNumberOfComponentsPerPixel()
                   for img in (a, b)) / 2 ** 20
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    if config["method"] == "mfenet-naive":
        slices, precision = naive_mfenet(a, b, device), "fp32"
    else:
        result = fuse_volumes(a, b, method=config["method"], device=str(device), batch_size=config["batch"],
                              precision=config["precision"], compile=config.get("compile", False),
                              edges=config["workload"] in ("memory", "clinical"),
                              crop_to_anatomy=config.get("crop", True))
        slices, precision = result.slices, result.precision
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    measured = dict(config, precision_used=precision, slices=slices, seconds=round(seconds, 3),
                    slices_per_s=round(slices / seconds, 3), input_mb=round(input_mb, 1),
                    reference_voxels=a.GetNumberOfPixels(),
                    rss_before_mb=round(rss_before, 1), peak_rss_mb=round(peak_rss_mb(), 1),
                    torch_threads=torch.get_num_threads(), cpu_capability=torch.backends.cpu.get_cpu_capability())
    if device.type == "cuda":
        measured["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1)
    return measured


def run_in_subprocess(config: dict, timeout: float) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--one", json.dumps(config)]
    env = dict(os.environ, **CPU_CLASSES[config.get("cpu_class", "native")])
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        return dict(config, error=(done.stderr.strip().splitlines() or ["failed"])[-1])
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------- planning
def plan(args) -> list:
    from MedFusionLib.methods import REGISTRY

    devices = [d for d in args.devices.split(",") if d]
    if "cuda" in devices:
        import torch

        if not torch.cuda.is_available():
            print("benchmark: no CUDA device, CPU only", flush=True)
            devices = [d for d in devices if d != "cuda"]
    configs = []
    for workload, device, cpu_class in [(w, d, c) for w in args.workloads.split(",") if w for d in devices
                                        for c in (args.cpu_class_list if d == "cpu" else ["native"])]:
        base = dict(workload=workload, device=device, slices=args.slices, threads=args.threads,
                    cpu_class=cpu_class)
        configs.append(dict(base, method="average", batch=max(args.batch_list), precision="fp32"))
        if args.naive and workload in ("volume", "sts", "stroke"):
            configs.append(dict(base, method="mfenet-naive", batch=1, precision="fp32"))
        for method in args.methods.split(","):
            kind = REGISTRY.get(method).kind
            for batch in args.batch_list:
                for precision in (args.precisions.split(",") if kind == "network" else ["fp32"]):
                    if method == "average" and batch == max(args.batch_list) and precision == "fp32":
                        continue
                    configs.append(dict(base, method=method, batch=batch, precision=precision))
            if kind == "network" and args.uncropped:
                for precision in args.precisions.split(","):
                    configs.append(dict(base, method=method, batch=max(args.batch_list), precision=precision,
                                        crop=False))
            if args.compile and kind == "network":
                configs.append(dict(base, method=method, batch=max(args.batch_list), precision="fp32",
                                    compile=True))
    if args.memory:
        configs.append(dict(workload="memory", device="cpu", method="average", batch=8, precision="fp32",
                            threads=args.threads))
    return configs


def fastest(measured: list) -> dict:
    """The fastest of a configuration's repeats (the least disturbed by other load), all times kept."""
    done = [r for r in measured if "error" not in r]
    if not done:
        return measured[-1]
    best = dict(min(done, key=lambda r: r["seconds"]))
    best["all_seconds"] = [r["seconds"] for r in done]
    return best


def add_ratios(results: list) -> None:
    def key_of(r):
        return r["workload"], r["device"], r.get("cpu_class", "native")

    baseline = {key_of(r): r["seconds"] for r in results if r.get("method") == "average" and "error" not in r}
    naive = {key_of(r): r["seconds"] for r in results if r.get("method") == "mfenet-naive" and "error" not in r}
    for r in results:
        key = key_of(r)
        if "error" in r:
            continue
        if key in baseline:
            r["x_average_time"] = round(r["seconds"] / baseline[key], 2)
        if key in naive and r["method"] == "mfenet":
            r["speedup_vs_naive"] = round(naive[key] / r["seconds"], 2)
        if r.get("crop", True) and r["method"] != "mfenet-naive":
            same = [u for u in results if u.get("crop") is False and "error" not in u and key_of(u) == key
                    and (u["method"], u["batch"], u["precision"]) == (r["method"], r["batch"], r["precision"])]
            if same:
                r["crop_gain"] = round(same[0]["seconds"] / r["seconds"], 2)
        if r["workload"] == "memory":
            out_mb = 4 * r["reference_voxels"] / 2 ** 20  # float32 output on A's grid, held twice at the end
            labels_mb = r["reference_voxels"] / 2 ** 20  # uint8 edge labelmap
            r["memory_bound_mb"] = round(r["input_mb"] + 2 * out_mb + labels_mb + ALLOWANCE_MB, 1)
            r["memory_ok"] = r["peak_rss_mb"] <= r["memory_bound_mb"]


def table(results: list) -> str:
    head = ("| workload | device | CPU class | method | batch | precision | crop | slices | s | slices/s | "
            "x average | vs naive | crop gain | peak RSS MB | CUDA MB |")
    lines = [head, "|" + "---|" * 15]
    for r in results:
        where = f"| {r['workload']} | {r['device']} | {r.get('cpu_class', 'native')} |"
        if "error" in r:
            lines.append(f"{where} {r['method']} | {r['batch']} | {r['precision']} | error: {r['error']} |||||||||")
            continue
        method = r["method"] + (" (compile)" if r.get("compile") else "")
        crop = "-" if r["method"] == "mfenet-naive" else ("off" if r.get("crop") is False else "on")
        lines.append(f"{where} {method} | {r['batch']} | {r['precision_used']} | {crop} | "
                     f"{r['slices']} | {r['seconds']:.1f} | {r['slices_per_s']:.2f} | "
                     f"{r.get('x_average_time', '')} | {r.get('speedup_vs_naive', '')} | {r.get('crop_gain', '')} | "
                     f"{r['peak_rss_mb']:.0f} | "
                     f"{r.get('cuda_max_allocated_mb', '')} |")
    return "\n".join(lines)


def machine() -> dict:
    import torch

    from MedFusionLib.acceleration import cpu_capabilities, cpu_has_native_bf16, kernel_isa

    caps = cpu_capabilities()
    info = dict(python=platform.python_version(), torch=torch.__version__, cpu=caps.get("cpu_name", platform.processor()),
                cores=os.cpu_count(), cpu_capability=torch.backends.cpu.get_cpu_capability(),
                native_bf16=cpu_has_native_bf16(), kernel_isa=kernel_isa(), load_average=os.getloadavg(),
                cpu_flags=sorted(k for k, v in caps.items() if v is True and k.startswith(("avx", "amx"))))
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="mfenet,edpsn,fusioncinn", help="methods besides average")
    parser.add_argument("--workloads", default="volume,harvard", help="volume, harvard, sts, stroke, clinical and/or clinical-noedges")
    parser.add_argument("--devices", default="cpu,cuda", help="cpu and/or cuda (skipped when absent)")
    parser.add_argument("--batches", default="8", help="comma-separated batch sizes (default 8)")
    parser.add_argument("--precisions", default="fp32,auto", help="precisions tried for networks")
    parser.add_argument("--slices", type=int, default=200, help="slices of the 256x256 volume (default 200)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--no-naive", dest="naive", action="store_false", help="skip the naive MFEnet loop")
    parser.add_argument("--compile", action="store_true", help="also try torch.compile for networks")
    parser.add_argument("--cpu-classes", default="native", help="native and/or avx2 (kernels capped at AVX2)")
    parser.add_argument("--no-uncropped", dest="uncropped", action="store_false",
                        help="skip the networks' runs without cropping to the anatomy")
    parser.add_argument("--memory", action="store_true", help="also run the 512x512x600 memory check")
    parser.add_argument("--scoring", type=int, default=0, metavar="N",
                        help="also time the evaluation scoring on N Harvard pairs per folder (metrics_speed.py)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs per configuration, round-robin; the fastest counts (for a shared machine)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per configuration")
    parser.add_argument("--out", default=str(REPO / "reports" / "benchmark.json"), help="JSON output")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one JSON configuration
    args = parser.parse_args(argv)
    args.batch_list = [int(b) for b in args.batches.split(",")]
    args.cpu_class_list = [c for c in args.cpu_classes.split(",") if c]
    unknown = sorted(set(args.cpu_class_list) - set(CPU_CLASSES))
    if unknown:
        parser.error(f"unknown CPU class {', '.join(unknown)}; choose from {', '.join(CPU_CLASSES)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return 0
    configs = plan(args)
    runs = [[] for _ in configs]
    for repeat in range(args.repeats):  # round-robin, so a burst of load elsewhere hits every configuration
        for config, measured in zip(configs, runs):
            print(f"benchmark ({repeat + 1}/{args.repeats}): {config}", flush=True)
            measured.append(run_in_subprocess(config, args.timeout))
            print(f"  -> {measured[-1].get('seconds', measured[-1].get('error'))}", flush=True)
    results = [fastest(measured) for measured in runs]
    add_ratios(results)
    report = dict(machine=machine(), command=" ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
                  date=time.strftime("%Y-%m-%dT%H:%M:%S%z"), results=results)
    if args.scoring:
        scoring = subprocess.run([sys.executable, str(REPO / "scripts" / "metrics_speed.py"), "--pairs",
                                  str(args.scoring)], capture_output=True, text=True, timeout=args.timeout)
        report["scoring"] = (scoring.stdout if scoring.returncode == 0 else scoring.stderr).strip().splitlines()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(table(results))
    for r in results:
        if "memory_bound_mb" in r:
            print(f"memory: peak RSS {r['peak_rss_mb']:.0f} MB for {r['input_mb']:.0f} MB of inputs; bound "
                  f"{r['memory_bound_mb']:.0f} MB (inputs + 2 x output + labelmap + {ALLOWANCE_MB:.0f} MB): "
                  f"{'within' if r['memory_ok'] else 'EXCEEDED'}")
    if "scoring" in report:
        print("evaluation scoring (scripts/metrics_speed.py):\n  " + "\n  ".join(report["scoring"]))
    print(f"machine: {report['machine']}\nwritten: {out}")
    failed = [r for r in results if "error" in r or r.get("memory_ok") is False]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
