"""What both ablation scripts share: the validation pairs they score (every n-th of each folder), as tensors for
the rules and networks and as the CDDFuse scorer's grey images, and the one-line score of a fused batch."""
import os
import pathlib
import sys

import numpy as np
import torch

REPO = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "MedFusion"))
import cddfuse_table as T  # noqa: E402
from MedFusionLib import data_split  # noqa: E402

torch.set_num_threads(1)


class Validation:
    def __init__(self, every: int, folders=None, every_of=None):
        # a MedFusion folder with metrics/cddfuse.py; unset once merged
        self.scorer = T.load_scorer(os.environ.get("CDDFUSE_SCORER"))
        self.pairs, self.sources = T.validation_pairs(None, every, self.scorer, folders, every_of)
        self.A = torch.from_numpy(np.stack([data_split.read_y(p.path_a) for p in self.pairs])[:, None])
        self.B = torch.from_numpy(np.stack([data_split.read_y(p.path_b) for p in self.pairs])[:, None])
        self.max_means = None  # pixel-max's means on the same pairs, for the "> max" count (scored first)

    def score(self, name: str, fused) -> dict:
        """Print ``name``, then per folder: metrics above CDDFuse's published numbers and above pixel-max, and
        the 8 means; returns folder -> means."""
        fused = np.round(fused.clamp(0, 1)[:, 0].numpy() * 255).astype(np.float64)
        per_folder = T.score_per_folder(self.scorer, self.pairs, self.sources, fused)
        if self.max_means is None:
            top = torch.maximum(self.A, self.B).clamp(0, 1)[:, 0].numpy()
            self.max_means = T.score_per_folder(self.scorer, self.pairs, self.sources,
                                                np.round(top * 255).astype(np.float64))
        out = [name]
        for folder, means in per_folder.items():
            wins = sum(x > c for x, c in zip(means, T.CDDFUSE[folder]))
            over_max = sum(x > c for x, c in zip(means, self.max_means[folder]))
            out.append(f"{folder[:5]} {wins}/8 >max {over_max} " + " ".join(f"{x:.3f}" for x in means))
        print(" | ".join(out), flush=True)
        return per_folder
