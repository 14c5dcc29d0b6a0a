"""How fast a network runs on this CPU per slice, by slices per call and by heap setting (issue 19).

The engine's CPU choices rest on this probe: how many slices a network gets per call
(acceleration.CPU_PIXELS_PER_CALL) and keeping freed memory in the heap while fusing (heap.reused_heap). It
times ``method(a, b)`` (the engine's accelerated call, chunking off) on random slices, after one warm-up call
per configuration; each heap setting runs in its own process, because glibc's setting is process-wide.

    python scripts/network_call_probe.py --method mfenet --precisions fp32,bf16 --size 256x256 --calls 1,2,8
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "MedFusion"))


def probe(method: str, precision: str, size, calls, slices: int, reused_heap: bool) -> dict:
    import contextlib

    import torch

    from MedFusionLib import acceleration, heap
    from MedFusionLib.methods import REGISTRY

    acceleration.CPU_PIXELS_PER_CALL = 1 << 62  # the probe sets the slices per call itself
    fusion = REGISTRY.get(method).load(torch.device("cpu"), {}, precision)
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.rand((slices, 1) + tuple(size), generator=generator) for _ in range(2))
    out = {}
    with heap.reused_heap() if reused_heap else contextlib.nullcontext():
        for n in calls:
            fusion(a[:n], b[:n])  # warm-up: oneDNN primitives for this shape
            started = time.perf_counter()
            for i in range(0, slices, n):
                fusion(a[i:i + n], b[i:i + n])
            out[str(n)] = round(1000 * (time.perf_counter() - started) / slices, 1)
    return {"method": method, "precision": fusion.precision, "reused_heap": reused_heap and heap.available(),
            "size": list(size), "ms_per_slice_by_slices_per_call": out,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="mfenet")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--size", default="256x256", help="slice size HxW")
    parser.add_argument("--calls", default="1,2,8", help="slices per call")
    parser.add_argument("--slices", type=int, default=16, help="slices timed per configuration")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(probe(**json.loads(args.one))))
        return
    size = tuple(int(v) for v in args.size.lower().split("x"))
    calls = [int(v) for v in args.calls.split(",")]
    rows = []
    for precision in args.precisions.split(","):
        for reused in (False, True):
            config = dict(method=args.method, precision=precision, size=size, calls=calls, slices=args.slices,
                          reused_heap=reused)
            done = subprocess.run([sys.executable, __file__, "--one", json.dumps(config)], capture_output=True,
                                  text=True, check=True, env=dict(os.environ))
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            row = rows[-1]
            print(f"{row['method']} {row['precision']} {'x'.join(map(str, size))} heap reused={row['reused_heap']}: "
                  + ", ".join(f"{n}/call {ms} ms" for n, ms in row["ms_per_slice_by_slices_per_call"].items()),
                  flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
