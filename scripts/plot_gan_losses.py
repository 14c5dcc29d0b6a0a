#!/usr/bin/env python3
"""Plot a GAN run's loss terms (the run folder's terms.csv, written by MedFusionTraining/training.py):

    python scripts/plot_gan_losses.py runs/ddcgan-cpu/terms.csv --out reports/families/ddcgan-losses.png

Left: the content loss, the generator's adversarial term and the discriminators' loss; right: the discriminators'
mean scores on the real sources and on the fused image (LSGAN targets 1 and 0: curves that stay apart from both
targets mean neither player wins outright, i.e. no collapse).
"""
from __future__ import annotations

import argparse
import csv

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("terms", help="terms.csv of a GAN run (columns step, content, g_adv, d_loss, d_real, d_fake)")
    parser.add_argument("--out", required=True, help="PNG to write")
    args = parser.parse_args(argv)
    with open(args.terms) as handle:
        rows = list(csv.DictReader(handle))
    step = [int(r["step"]) for r in rows]
    fig, (losses, scores) = plt.subplots(1, 2, figsize=(9, 3.2))
    for key in ("content", "g_adv", "d_loss"):
        losses.plot(step, [float(r[key]) for r in rows], label=key)
    losses.set_xlabel("step")
    losses.set_title("losses")
    losses.legend()
    for key in ("d_real", "d_fake"):
        scores.plot(step, [float(r[key]) for r in rows], label=key)
    for target in (0, 1):
        scores.axhline(target, ls=":", c="grey")
    scores.set_xlabel("step")
    scores.set_title("mean discriminator score (LSGAN targets: real 1, fused 0)", fontsize=8)
    scores.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
