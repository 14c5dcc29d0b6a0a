#!/usr/bin/env python3
"""Measure which method and which network options should be the defaults (issue 13, deliverable 5).

1. Benchmark metrics: every method variant's mean rank over the 17 metrics on the validation split (results.csv
   files written by scripts/results_table.py; each modality pair weighs the same), see evaluation/ranking.py.
2. Speed: the default must take at most FAST_SECONDS per 256x256 slice in the same table.
3. Visual cleanliness: the share of foreground voxels each variant turns pure white although neither source is
   (stroke T1 + T2, 8 central axial slices; sts_001 CT + MR, 4 slices), on the engine's normalised sources.

The default is the best-ranked variant that is fast and whose saturated share stays under ``CLEAN_SHARE``; each network's default
options are its best-ranked clean variant. Writes reports/defaults/defaults.md, e.g.

    nice -n 19 .venv/bin/python scripts/choose_defaults.py
"""
from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "MedFusion"))

from MedFusionLib.evaluation.ranking import rank_methods, read_rows, saturated_share  # noqa: E402

# reports/results/results.csv was measured on 2026-11-21, when MFEnet's defaults were the paper's (rule max,
# edge weight 1) and EDPSN's eem_weight 1: spell the options out so the labels stay true after defaults change.
LABELS_2026_11_21 = {"mfenet": "mfenet[rule=max,edge_weight=1]", "edpsn": "edpsn[eem_weight=1]",
                     **{f"mfenet[rule={r}]": f"mfenet[rule={r},edge_weight=1]" for r in ("add", "average", "softmax")}}
# The measured tables the defaults come from (scripts/results_table.py, validation split, every 2nd image): the
# results table (2026-11-21, with MedFusion-Net's rows of 2026-12-01) and the EDPSN variants.
MEASURED = (REPO / "reports" / "results" / "results.csv", REPO / "reports" / "defaults" / "results.csv")
CLEAN_SHARE = 0.005  # at most 0.5% of the foreground invented pure white
# The default must also be fast: at most this many seconds per 256x256 slice in the measured table (one torch
# thread), so that a 300-slice 512x512 CT fuses in about a minute on a laptop CPU (issue 19). Network option
# defaults are not held to it (each is the best clean variant of its own method).
FAST_SECONDS = 0.05


def cleanliness(labels, shared: Path) -> dict:
    import numpy as np
    import SimpleITK as sitk

    from MedFusionLib.engine import fuse_volumes
    from MedFusionLib.methods import REGISTRY
    from MedFusionLib.methods.registry import parse_method_spec

    stroke = shared / "volumes" / "stroke_T1_T2_FLAIR"
    sts = shared / "volumes" / "sts_001"
    t1 = sitk.ReadImage(str(stroke / "T1.nii.gz"))
    middle = t1.GetSize()[2] // 2
    cases = [
        (t1[:, :, middle - 4:middle + 4], sitk.ReadImage(str(stroke / "T2.nii.gz")), "mr", "mr"),
        (sitk.ReadImage(str(sts / "CT.nii.gz"))[:, :, 27:31], sitk.ReadImage(str(sts / "MR_T1.nii.gz")), "ct:soft",
         "mr"),
    ]
    shares = {}
    for label in labels:
        method, options = parse_method_spec(label, REGISTRY)
        values = []
        for a, b, preset_a, preset_b in cases:
            result = fuse_volumes(a, b, method=method, method_options=options, preset_a=preset_a,
                                  preset_b=preset_b, edges=False, return_sources=True, device="cpu")
            arrays = [sitk.GetArrayFromImage(x) for x in (*result.sources, result.fused)]
            values.append(saturated_share(*arrays))
        shares[label] = float(np.mean(values))
        print(f"  {label:<34} saturated {100 * shares[label]:.2f}%", flush=True)
    return shares


def seconds_per_slice(rows) -> dict:
    """label -> mean fusion seconds per 256x256 slice over the measured rows."""
    import numpy as np

    by_label = {}
    for row in rows:
        by_label.setdefault(row["method"], []).append(float(row["seconds"]))
    return {label: float(np.mean(values)) for label, values in by_label.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", nargs="+", default=[str(p) for p in MEASURED])
    parser.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(REPO / "reports" / "defaults" / "defaults.md"))
    args = parser.parse_args(argv)

    rows = read_rows([Path(p) for p in args.results], LABELS_2026_11_21)
    ranks = rank_methods(rows)
    print("mean rank over 17 metrics (1 = best):", flush=True)
    shares = cleanliness(list(ranks), Path(args.shared))
    clean = [label for label in ranks if shares[label] <= CLEAN_SHARE]
    seconds = seconds_per_slice(rows)
    best = next(label for label in clean if seconds[label] <= FAST_SECONDS)
    networks = {}
    for label in clean:
        networks.setdefault(label.split("[")[0], label)

    command = " ".join(["python scripts/choose_defaults.py", *(sys.argv[1:] if argv is None else argv)])
    sources = ", ".join(f"`{Path(p).resolve().relative_to(REPO)}`" if Path(p).resolve().is_relative_to(REPO)
                        else f"`{p}`" for p in args.results)
    lines = [
        "# Defaults by measurement",
        "",
        f"- Command: `{command}` ({datetime.date.today().isoformat()})",
        f"- Benchmark: {sources} (validation split, every 2nd image; rows of 2026-11-21 relabelled with the "
        "options they were measured with: `mfenet` = `mfenet[rule=max,edge_weight=1]`, `edpsn` = "
        "`edpsn[eem_weight=1]`)",
        "- Rank: mean over the 17 metrics of each variant's rank among all variants (1 = best), per modality pair, "
        "averaged over CT-MRI, PET-MRI and SPECT-MRI",
        f"- Clean: at most {100 * CLEAN_SHARE:.1f}% of the foreground invented pure white (fused >= 0.995 where "
        "both sources < 0.95; stroke T1 + T2 8 axial slices, sts_001 CT + MR 4 slices)",
        f"- Fast: at most {FAST_SECONDS:g} s per 256x256 slice in the benchmark's seconds column (one torch thread); "
        "asked of the default method only",
        "",
        "| variant | mean rank | s/slice | fast | saturated | clean |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| `{label}` | {rank:.2f} | {seconds[label]:.3g} | {'yes' if seconds[label] <= FAST_SECONDS else 'no'} "
              f"| {100 * shares[label]:.2f}% | {'yes' if label in clean else 'no'} |" for label, rank in ranks.items()]
    lines += ["", f"Default method: `{best}`.", "",
              "Best clean variant per method: " + ", ".join(f"`{v}`" for v in networks.values()) + "."]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-3:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
