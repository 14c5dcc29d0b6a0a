#!/usr/bin/env python3
"""The README's results table: networks beside the classic methods on the held-out validation cases.

Every registered method, and MFEnet with each fusion rule with and without the paper's edge enhancement,
on every validation pair (MedFusionLib.data_split: CT-MRI and PET-MRI case 41, SPECT-MRI case 29; the networks
never saw them), scored with all 17 metrics. The README shows the metrics of the papers (MFEnet: FMI_pixel,
SCD, SSIM, Q_Y; EDPSN: EN, SD, SCD, Q_AB/F, VIF, PSNR, SSIM; FusionCINN: MI, SCD, SSIM, VIF, EI) and SF, per
modality pair, with seconds per 256x256 slice on this CPU, on the results page reports/README.md, and a compact
table of overall means in the README; reports/results/ holds everything.

It is scripts/baseline_report.py with other defaults (extra arguments override them), e.g.

    nice -n 19 .venv/bin/python scripts/results_table.py --every 2 --jobs 2   # the committed report (17 min)
    .venv/bin/python scripts/results_table.py --every 2 --from-csv           # re-render it, no evaluation
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import baseline_report  # noqa: E402

MFENET_RULES = ("max", "add", "average", "softmax")
README_METRICS = "FMI_pixel,SCD,SSIM,Q_Y,Q_ABF,VIFF,MI,EN,SD,SF,EI,PSNR"


def methods() -> str:
    from MedFusionLib.methods import REGISTRY

    chosen = [info.name for info in REGISTRY.infos() if info.kind == "classic"]
    # MFEnet: the paper's configuration (max rule, edge weight 1) first, then every rule without edge lines, then
    # with them. Options are spelled out, so labels keep their meaning when defaults change.
    chosen += ["mfenet[rule=max,edge_weight=1]"] + [f"mfenet[rule={rule},edge_weight=0]" for rule in MFENET_RULES]
    chosen += [f"mfenet[rule={rule},edge_weight=1]" for rule in MFENET_RULES[1:]]
    chosen += [info.name for info in REGISTRY.infos() if info.kind == "network" and info.name != "mfenet"]
    return ",".join(chosen)


def main(argv=None) -> int:
    repo = baseline_report.REPO
    defaults = ["--section", "results", "--heading", "Results on the validation cases", "--split", "val",
                "--every", "1", "--methods", methods(), "--out", str(repo / "reports" / "results"),
                "--readme-metrics", README_METRICS, "--per-pair", "--timing-note", "",
                "--script", "scripts/results_table.py"]
    typed = list(sys.argv[1:] if argv is None else argv)
    return baseline_report.main(defaults + typed, typed=typed)


if __name__ == "__main__":
    sys.exit(main())
