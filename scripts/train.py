#!/usr/bin/env python3
"""Train one of MedFusion's networks on the shared Harvard pairs, and export its weights into the package.

    python scripts/train.py mfenet --recipe cpu --out runs/mfenet-cpu            # train (about 1 h on 2 cores)
    python scripts/train.py mfenet --recipe cpu --out runs/mfenet-cpu --resume   # continue an interrupted run
    python scripts/train.py mfenet --recipe cpu --out runs/mfenet-cpu --resume --export
                                   # (finished run: nothing to train) -> MedFusionLib/weights/mfenet.pt + manifest
    python scripts/train.py mfenet --recipe paper --device cuda --out runs/mfenet-paper   # the paper's 60 epochs

The machinery (data, split by case, sampling, loop, checkpoints, log.csv, validation, export) is in
MedFusion/MedFusionTraining/training.py; each network has its module there (MedFusionTraining/<name>.py).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "MedFusion"))  # this clone's packages, whatever an older install provides

from MedFusionTraining import training  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("network", choices=sorted(training.TRAINABLES), help="network to train")
    parser.add_argument("--recipe", default="cpu", help="named recipe of the network (cpu, paper, smoke)")
    parser.add_argument("--out", required=True, help="run folder for checkpoints and logs, e.g. runs/mfenet-cpu")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "harvard"),
                        help="Harvard pairs folder (default: ../shared/data/harvard next to the repository)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, mps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="override the recipe's number of steps")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    parser.add_argument("--export", action="store_true",
                        help="after training, export the best checkpoint into MedFusionLib/weights + manifest")
    parser.add_argument("--weights-dir", default=None, help="export here instead of MedFusionLib/weights")
    parser.add_argument("--export-checkpoint", choices=("best", "last"), default="best",
                        help="export best.pt (the periodic validation's pick, default) or the run's last.pt")
    args = parser.parse_args(argv)

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    trainable = training.get_trainable(args.network)
    if args.recipe not in trainable.recipes:
        parser.error(f"{args.network} has no recipe '{args.recipe}'; choose one of: {', '.join(trainable.recipes)}")
    command = "python scripts/train.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    summary = training.train(trainable, args.recipe, args.out, data_root=args.data, device=args.device,
                             seed=args.seed, resume=args.resume, steps=args.steps, command=command,
                             log=lambda msg: print(msg, flush=True))
    print(f"training: {summary}", flush=True)
    if args.export:
        if not summary.get("finished"):
            print("not exporting: the run is not finished (continue it with --resume)", flush=True)
            return 1
        training.export(trainable, args.out, data_root=args.data, device=args.device,
                         weights_dir=args.weights_dir, log=lambda msg: print(msg, flush=True),
                         checkpoint=args.export_checkpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
