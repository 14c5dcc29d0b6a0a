"""The train / validation split of the shared Harvard (AANLIB) pairs, by case, and how its PNGs are read.

Used by scripts/train.py, the tests and the evaluation script, so that all of them hold out the same cases.
The images themselves are never shipped; they are read from ``shared/data/harvard`` next to the repository.

File names: the leading digits are the case (subject) id, the last three the slice: ``28013.png`` = case 28,
slice 13. Adjacent slices of a case are nearly identical, so the split is BY CASE, never by slice.

Validation: one case per modality folder, so that every modality pair (and every modality: CT, MRI, PET,
SPECT) is validated. A case id that is held out anywhere is excluded from training in EVERY folder: case ids
are shared between folders and at least one of them is the same subject (CT-MRI/MRI/28*.png and
SPECT-MRI/MRI/28*.png are byte-identical images), so holding a case out of one folder only would leak it.
With the choice below (41 in CT-MRI and PET-MRI, 29 in SPECT-MRI) no folder loses a second case.

    folder      cases (slices)                                        validation
    CT-MRI      2 (19), 28 (16), 32 (18), 33 (17), 34 (21), 41 (20)    41
    PET-MRI     25 (94), 41 (93)                                      41
    SPECT-MRI   3, 4, 11, 15, 18, 21, 25, 28, 29 (17), 35, 40          29
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from .pairs import Pair

# folder -> (source a, source b): the sub-folders holding the two co-registered images of each pair.
FOLDERS: Dict[str, Tuple[str, str]] = {
    "CT-MRI": ("CT", "MRI"),
    "PET-MRI": ("MRI", "PET"),
    "SPECT-MRI": ("MRI", "SPECT"),
}
# Pseudo-colour (RGB) modalities: their luma Y is used.
COLOUR_MODALITIES = ("PET", "SPECT")

VALIDATION_CASES: Dict[str, Tuple[str, ...]] = {
    "CT-MRI": ("41",),
    "PET-MRI": ("41",),
    "SPECT-MRI": ("29",),
}


def held_out_cases() -> frozenset:
    """Every case id that is validation somewhere; none of them is trained on in any folder."""
    return frozenset(c for cases in VALIDATION_CASES.values() for c in cases)


def default_root() -> Path:
    """``<repo>/../shared/data/harvard`` (the shared data next to the repository checkout)."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "harvard"


def case_and_slice(filename: str) -> Tuple[str, int]:
    """'28013.png' -> ('28', 13)."""
    stem = Path(filename).stem
    if not stem.isdigit() or len(stem) < 4:
        raise ValueError(f"'{filename}' is not a Harvard slice name (case digits followed by a 3-digit slice).")
    return str(int(stem[:-3])), int(stem[-3:])


def split_of(folder: str, case: str) -> str:
    """'val' for the folder's validation cases, 'train' for cases held out nowhere, 'excluded' otherwise."""
    if case in VALIDATION_CASES.get(folder, ()):
        return "val"
    return "excluded" if case in held_out_cases() else "train"


def list_pairs(root: Optional[Path] = None, split: str = "train", folders=None) -> List[Pair]:
    """The pairs of ``split`` ('train', 'val' or 'all'), sorted by folder, case, slice (a deterministic order)."""
    root = Path(root) if root is not None else default_root()
    if not root.is_dir():
        raise FileNotFoundError(f"The Harvard image folder '{root}' does not exist.")
    pairs = []
    for folder in folders or FOLDERS:
        mod_a, mod_b = FOLDERS[folder]
        dir_a, dir_b = root / folder / mod_a, root / folder / mod_b
        for path_a in sorted(dir_a.glob("*.png")):
            path_b = dir_b / path_a.name
            if not path_b.is_file():
                continue
            case, _ = case_and_slice(path_a.name)
            which = split_of(folder, case)
            if split == "all" or which == split:
                pairs.append(Pair(folder, path_a.name, path_a, path_b))
    pairs.sort(key=lambda p: (list(FOLDERS).index(p.folder), int(p.case), p.slice))
    return pairs


def read_y(path) -> np.ndarray:
    """One PNG as float32 (H, W) in [0, 1]: gray as is, RGB(A) pseudo-colour as BT.601 luma
    Y = 0.299 R + 0.587 G + 0.114 B (alpha ignored)."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise FileNotFoundError(f"Cannot read the image '{path}'.")
    scale = 65535.0 if image.dtype == np.uint16 else 255.0
    image = image.astype(np.float32) / scale
    if image.ndim == 3:
        from .colour import LUMA_WEIGHTS

        b, g, r = image[..., 0], image[..., 1], image[..., 2]  # OpenCV order is BGR(A)
        image = LUMA_WEIGHTS[0] * r + LUMA_WEIGHTS[1] * g + LUMA_WEIGHTS[2] * b
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def content_hash(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


def split_summary(root: Optional[Path] = None) -> dict:
    """Case ids and slice counts per folder and split (written into the weights manifest)."""
    out = {}
    for split in ("train", "val"):
        per_folder = {}
        for pair in list_pairs(root, split):
            entry = per_folder.setdefault(pair.folder, {"cases": [], "pairs": 0})
            if pair.case not in entry["cases"]:
                entry["cases"].append(pair.case)
            entry["pairs"] += 1
        out[split] = per_folder
    return out
