"""What every network's training smoke test shares: three small real training pairs, and a smoke run that is
trained once straight through and once interrupted and resumed (the two must end bit-identical)."""
from __future__ import annotations

import csv

import numpy as np
import torch

from MedFusionLib import data_split
from MedFusionTraining import training


def small_training_items(harvard_dir) -> "training.Items":
    """3 training pairs spread over the folders, cropped to 64x64 at the centre."""
    pairs = data_split.list_pairs(harvard_dir, "train")
    chosen = pairs[::len(pairs) // 3][:3]
    images = np.stack([np.stack([data_split.read_y(p.path_a), data_split.read_y(p.path_b)])[:, 96:160, 96:160]
                       for p in chosen])
    meta = [{"folder": p.folder, "case": p.case, "slice": p.slice, "modality": f"{p.modality_a}+{p.modality_b}"}
            for p in chosen]
    return training.Items(images.astype(np.float32), meta)


def smoke_run_and_resume(trainable, items, tmp_path):
    """Train ``trainable``'s smoke recipe in tmp_path/a, and again in tmp_path/b stopped after 2 steps then resumed.

    Asserts that the run finished with a logged training loss and that the resumed run ends with exactly the same
    weights; returns (summary of the straight run, its last weights) for the caller's own checks."""
    logs = []
    summary = training.train(trainable, "smoke", tmp_path / "a", train_items=items, val_items=items, log=logs.append)
    assert summary["finished"]
    with open(tmp_path / "a" / "log.csv") as handle:
        assert [r for r in csv.DictReader(handle) if r["train_loss"]]
    training.train(trainable, "smoke", tmp_path / "b", steps=2, train_items=items, val_items=items, log=logs.append)
    training.train(trainable, "smoke", tmp_path / "b", steps=summary["steps"], resume=True, train_items=items,
                   val_items=items, log=logs.append)
    first = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    second = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(first[k], second[k]) for k in first)
    return summary, first
