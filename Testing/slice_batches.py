"""What the method tests share to feed a method: slices as an (N, 1, H, W) float32 batch, and a few held-out
Harvard pairs per folder spread over each case."""
from __future__ import annotations

import numpy as np
import torch

from MedFusionLib import data_split


def batch(*arrays) -> torch.Tensor:
    """2D slices -> the (N, 1, H, W) float32 batch a method takes."""
    return torch.from_numpy(np.stack(arrays)[:, None].astype(np.float32))


def spread_validation_pairs(root, per_folder: int):
    """folder -> ``per_folder`` validation pairs (never trained on) spread over the case, end slices skipped."""
    pairs = data_split.list_pairs(root, "val")
    chosen = {}
    for folder in data_split.FOLDERS:
        of_folder = [p for p in pairs if p.folder == folder]
        idx = np.linspace(0, len(of_folder) - 1, per_folder + 2).round().astype(int)[1:-1]
        chosen[folder] = [of_folder[i] for i in idx]
    return chosen
