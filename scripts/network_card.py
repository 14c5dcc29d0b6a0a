#!/usr/bin/env python3
"""A network's card: parameters, GFLOPs and CPU seconds per 256x256 slice, and Q_AB/F and SF per modality folder
on the FULL validation split beside pixel averaging (every held-out pair, full images, the engine's method load).

    python scripts/network_card.py --methods 'swinfusion;resnetzca;resnetzca[scales=two]' --threads 1

GFLOPs are counted by torch.utils.flop_counter (convolutions and matrix products, 2 per multiply-add) on one
256x256 pair; seconds are the median of --repeats timed calls on one real 256x256 validation pair (after a
warm-up), float32, on --threads torch threads. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "MedFusion"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from MedFusionLib import data_split  # noqa: E402
from MedFusionLib.methods import REGISTRY  # noqa: E402
from MedFusionLib.methods.registry import parse_method_spec  # noqa: E402
from MedFusionLib.metrics import qabf, spatial_frequency  # noqa: E402


def cost(method, a, b, repeats: int):
    """(parameters, GFLOPs, median seconds) of fusing one pair."""
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in method.model.parameters()) if method.model is not None else 0
    with FlopCounterMode(display=False) as counter:
        method(a, b)
    times = []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        method(a, b)
        times.append(time.perf_counter() - t)
    return params, counter.get_total_flops() / 1e9, statistics.median(times[1:])


def folder_scores(fuse, pairs):
    """{folder: (mean Q_AB/F, mean SF)} over ``pairs``, fused in batches of 8."""
    values = {}
    for start in range(0, len(pairs), 8):
        chunk = pairs[start:start + 8]
        a = torch.from_numpy(np.stack([data_split.read_y(p.path_a) for p in chunk])[:, None].astype(np.float32))
        b = torch.from_numpy(np.stack([data_split.read_y(p.path_b) for p in chunk])[:, None].astype(np.float32))
        fused = fuse(a, b).numpy()
        for p, x, y, f in zip(chunk, a.numpy(), b.numpy(), fused):
            values.setdefault(p.folder, []).append((qabf(x[0], y[0], f[0], data_range=1.0),
                                                    spatial_frequency(f[0], data_range=1.0)))
    return {k: tuple(np.mean(v, axis=0)) for k, v in values.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", required=True,
                        help="';'-separated method specs, e.g. 'swinfusion;resnetzca[scales=two]' (average is added)")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "harvard"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    pairs = data_split.list_pairs(args.data, "val")
    probe = pairs[0]
    a = torch.from_numpy(data_split.read_y(probe.path_a))[None, None]
    b = torch.from_numpy(data_split.read_y(probe.path_b))[None, None]
    folders = list(data_split.FOLDERS)
    print(f"| method | parameters | GFLOPs / 256x256 | s / 256x256 slice ({args.threads} thread) | "
          + " | ".join(f"{f} Q_AB/F | {f} SF" for f in folders) + " |")
    print("|---" * (4 + 2 * len(folders)) + "|")
    for spec in ["average"] + [m.strip() for m in args.methods.split(";") if m.strip() not in ("", "average")]:
        name, options = parse_method_spec(spec, REGISTRY)
        method = REGISTRY.get(name).build("cpu", **options)
        params, gflops, seconds = cost(method, a, b, args.repeats)
        scores = folder_scores(method, pairs)
        cells = " | ".join(f"{scores[f][0]:.3f} | {scores[f][1]:.2f}" for f in folders)
        print(f"| `{spec}` | {params:,} | {gflops:.2f} | {seconds:.3f} | {cells} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
