#!/usr/bin/env python3
"""The EDPSN paper's seven metrics on the held-out validation pairs, per modality folder, as a markdown table.

    python scripts/edpsn_validation_table.py                      # edpsn and the pixel average
    python scripts/edpsn_validation_table.py --methods edpsn max  # any registered methods

Validation pairs: every pair of data_split's validation cases (CT-MRI 41, PET-MRI 41, SPECT-MRI 29), PET/SPECT
as BT.601 luma (the engine's YCbCr path fuses Y). Metrics from MedFusionLib.metrics (EN, SD, SCD, Q_ABF, VIFF,
PSNR, SSIM = SSIM(A,F) + SSIM(B,F)), averaged over the pairs of a folder. Seconds per slice: wall time of one
method call on a batch of 16 256x256 slices divided by 16 (after one warm-up call), CPU, torch's threads.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parents[1]
try:
    import MedFusionLib  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO / "MedFusion"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from MedFusionLib import data_split, metrics  # noqa: E402
from MedFusionLib.methods import REGISTRY  # noqa: E402

COLUMNS = ("EN", "SD", "SCD", "Q_ABF", "VIFF", "PSNR", "SSIM")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=["edpsn", "average"])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "harvard"))
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    pairs = data_split.list_pairs(Path(args.data), "val")
    a = torch.from_numpy(np.stack([data_split.read_y(p.path_a) for p in pairs])[:, None])
    b = torch.from_numpy(np.stack([data_split.read_y(p.path_b) for p in pairs])[:, None])
    print(f"| Method | Pair | n | {' | '.join(COLUMNS)} | s / slice |")
    print("|---|---|---|" + "---|" * (len(COLUMNS) + 1))
    for name in args.methods:
        info = REGISTRY.get(name)
        fuse = info.build(torch.device("cpu"))
        fused = torch.cat([fuse(a[i:i + 16], b[i:i + 16]) for i in range(0, len(pairs), 16)]).numpy()
        fuse(a[:16], b[:16])  # warm-up
        t = time.perf_counter()
        fuse(a[:16], b[:16])
        seconds = (time.perf_counter() - t) / 16
        for folder in data_split.FOLDERS:
            rows = [metrics.evaluate_all(a[i, 0].numpy(), b[i, 0].numpy(), fused[i, 0], names=COLUMNS)
                    for i, p in enumerate(pairs) if p.folder == folder]
            means = [np.mean([r[c] for r in rows]) for c in COLUMNS]
            print(f"| {info.title} | {folder} | {len(rows)} | " + " | ".join(f"{v:.4f}" for v in means)
                  + f" | {seconds:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
