#!/usr/bin/env python3
"""Per-slice scoring time of the evaluation harness, before and after the issue-19 metrics rewrite.

For real Harvard pairs, fused by several rules (stand-ins for the methods of one evaluation), every metric is
computed (a) with the frozen pre-rewrite implementation (Testing/metrics_reference: each metric on its own,
sources recomputed for every method) and (b) as the runner now does: one SourcePair per slice, every method's
fused image scored against it. Both run in this one process, pair by pair in turn, so that machine load affects
them alike; CPU time (process_time) and wall time are reported per slice and method, with their ratio, and
the largest difference between the two implementations' values.

    PYTHONPATH=MedFusion python scripts/metrics_speed.py --pairs 3
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Testing"))
sys.path.insert(0, str(ROOT / "MedFusion"))


def fusion_rules(a, b):
    """Four fused images per pair, saved as 8 bits as the harness scores them."""
    import cv2

    def saved(image):
        return np.rint(np.clip(image, 0.0, 1.0) * 255.0) / 255.0

    smooth_max = cv2.GaussianBlur(np.maximum(a, b).astype(np.float64), (5, 5), 1.0)
    rng = np.random.default_rng(0)
    return [saved(0.5 * (a + b)), saved(np.maximum(a, b)), saved(smooth_max),
            saved(0.7 * a + 0.3 * b + rng.normal(0.0, 0.01, a.shape))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3, help="pairs per Harvard folder (default 3)")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "harvard"))
    args = parser.parse_args()

    import metrics_reference
    from conftest import harvard_pair
    from MedFusionLib.metrics import METRICS, PREPARED_METRICS, SourcePair
    from MedFusionLib.metrics._common import Prepared, to_gray255

    names = list(METRICS)
    timings = {"before": [0.0, 0.0], "after": [0.0, 0.0]}  # [cpu, wall]
    per_metric = {m: 0.0 for m in names}  # CPU seconds of each metric on fused images after the first
    scored, worst = 0, 0.0
    for folder in ("CT-MRI", "PET-MRI", "SPECT-MRI"):
        first = folder.split("-")[0]
        for name in sorted(os.listdir(Path(args.data) / folder / first))[: args.pairs]:
            a, b = harvard_pair(folder, name)
            fused = fusion_rules(a, b)
            cpu, wall = time.process_time(), time.perf_counter()
            before = [{m: metrics_reference.METRICS[m].function(a, b, f, data_range=1.0) for m in names}
                      for f in fused]
            timings["before"][0] += time.process_time() - cpu
            timings["before"][1] += time.perf_counter() - wall
            cpu, wall = time.process_time(), time.perf_counter()
            sources = SourcePair(a, b)
            after = [sources.score(f, names) for f in fused]
            timings["after"][0] += time.process_time() - cpu
            timings["after"][1] += time.perf_counter() - wall
            scored += len(fused)
            # Per metric, with the sources already prepared (what every method after the first costs).
            for f in fused[1:]:
                image = Prepared(to_gray255(f, 1.0))
                for m in names:
                    cpu = time.process_time()
                    PREPARED_METRICS[m].function(sources.a, sources.b, image)
                    per_metric[m] += time.process_time() - cpu
            for old, new in zip(before, after):
                for m in names:
                    scale = max(1.0, abs(old[m]))
                    worst = max(worst, abs(old[m] - new[m]) / scale)
    print(f"{scored} (slice, method) scorings of {len(names)} metrics: {scored // 4} Harvard pairs x 4 fusion rules")
    for label, (cpu, wall) in timings.items():
        print(f"  {label:<6} {cpu / scored:.4f} s CPU  {wall / scored:.4f} s wall  per slice and method")
    ratio_cpu = timings["before"][0] / timings["after"][0]
    ratio_wall = timings["before"][1] / timings["after"][1]
    print(f"  speed-up {ratio_cpu:.1f}x CPU, {ratio_wall:.1f}x wall; largest difference {worst:.1e} (relative)")
    later = scored - scored // 4
    print("after, per metric, sources prepared (ms CPU per slice and method): " + ", ".join(
        f"{m} {1000 * per_metric[m] / later:.1f}" for m in names) + f"; total {1000 * sum(per_metric.values()) / later:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
