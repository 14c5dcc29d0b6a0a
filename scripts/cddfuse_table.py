#!/usr/bin/env python3
"""Score methods on the validation pairs in the CDDFuse protocol and count wins against CDDFuse and pixel-max.

    python scripts/cddfuse_table.py --methods average,max,gff,medfusionnet --every 2 --out reports/flagship

Each validation pair (MedFusionLib.data_split, never trained on) is fused on luma as the engine fuses a
pseudo-colour pair (PET/SPECT as BT.601 Y), the fused image is rounded to 8 bits, and scored against the sources'
8-bit grey images as the CDDFuse scorer reads them (``MedFusionLib.metrics.cddfuse``: EN, SD, SF, MI in nats,
SCD, VIF, Qabf, SSIM summed over both sources). Per modality pair: mean of every metric, the number of metrics
above CDDFuse's published MIF numbers and above pixel-max. ``--scorer-path`` puts a checkout that holds
``MedFusionLib/metrics/cddfuse.py`` first on the import path for scoring only (while that module is unmerged).
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "MedFusion"))

# CDDFuse (CVPR 2023) published MIF results, issue 14: EN, SD, SF, MI, SCD, VIF, Q_AB/F, SSIM (sum over both).
METRICS = ("EN", "SD", "SF", "MI", "SCD", "VIF", "Qabf", "SSIM")
CDDFUSE = {
    "CT-MRI": (4.88, 79.17, 38.14, 2.61, 1.41, 0.61, 0.68, 1.34),
    "PET-MRI": (4.23, 70.73, 29.57, 2.03, 1.69, 0.71, 0.71, 1.49),
    "SPECT-MRI": (3.90, 58.31, 20.87, 2.49, 1.35, 0.97, 0.78, 1.48),
}


def load_scorer(scorer_path):
    """MedFusionLib.metrics.cddfuse, from ``scorer_path`` (a MedFusion folder) if given."""
    if scorer_path:
        import types

        spec_root = Path(scorer_path) / "MedFusionLib"
        # A private package name so the scorer's relative imports resolve inside that checkout only.
        package = types.ModuleType("_scorer_lib")
        package.__path__ = [str(spec_root)]
        sys.modules["_scorer_lib"] = package
        return importlib.import_module("_scorer_lib.metrics.cddfuse")
    return importlib.import_module("MedFusionLib.metrics.cddfuse")


def read_grey(path, scorer):
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR if _is_colour(path) else cv2.IMREAD_GRAYSCALE)
    if image.ndim == 3:
        image = image[..., ::-1]  # BGR -> RGB for cddfuse_grey
    return scorer.cddfuse_grey(np.ascontiguousarray(image))


def _is_colour(path) -> bool:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return image.ndim == 3


def validation_pairs(data, every: int, scorer, folders=None, every_of=None):
    """Every ``every``-th validation pair of each folder (data_split: never trained on; ``every_of``: folder ->
    its own step), and the sources' grey images as the CDDFuse scorer reads them."""
    from MedFusionLib import data_split

    pairs = []
    for folder in folders or data_split.FOLDERS:
        pairs.extend(data_split.list_pairs(data, "val", folders=[folder])[::(every_of or {}).get(folder, every)])
    return pairs, [(read_grey(p.path_a, scorer), read_grey(p.path_b, scorer)) for p in pairs]


def score_per_folder(scorer, pairs, sources, fused) -> dict:
    """folder -> the mean of every metric (METRICS) over its pairs; ``fused``: 8-bit images (float 0-255)."""
    per_folder = {}
    for pair, (a, b), f in zip(pairs, sources, fused):
        per_folder.setdefault(pair.folder, []).append([scorer.score(a, b, f)[m] for m in METRICS])
    return {folder: np.nanmean(np.array(rows), axis=0).tolist() for folder, rows in per_folder.items()}


def fuse_all(method: str, pairs, batch: int = 8):
    """Fused 8-bit images (float 0-255) of every pair, and seconds of fusion per pair."""
    import torch

    from MedFusionLib import data_split
    from MedFusionLib.methods import REGISTRY
    from MedFusionLib.methods.registry import parse_method_spec

    name, options = parse_method_spec(method, REGISTRY)
    fuse = REGISTRY.get(name).build(torch.device("cpu"), **options)
    out, seconds = [], 0.0
    for start in range(0, len(pairs), batch):
        chunk = pairs[start:start + batch]
        a = torch.from_numpy(np.stack([data_split.read_y(p.path_a) for p in chunk])[:, None])
        b = torch.from_numpy(np.stack([data_split.read_y(p.path_b) for p in chunk])[:, None])
        t = time.perf_counter()
        fused = fuse(a, b)
        seconds += time.perf_counter() - t
        out.extend(np.round(np.clip(fused[:, 0].numpy(), 0, 1) * 255.0).astype(np.float64))
    return out, seconds / len(pairs)


def _montage_index(pairs, folder) -> int:
    """The middle validation pair of ``folder`` (the montage shows one pair per modality pair)."""
    of_folder = [i for i, p in enumerate(pairs) if p.folder == folder]
    return of_folder[len(of_folder) // 2]


def _previous(args) -> dict:
    """Results already in --out for the same subset (so that one method can be added without rescoring all)."""
    path = Path(args.out or "") / "cddfuse_protocol.json"
    if not args.out or not path.is_file():
        return {}
    return {k: v for k, v in json.loads(path.read_text())["results"].items() if v.get("every") == args.every}


def _safe(method: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in method)


def write_montage(path, pairs, sources, methods, tiles) -> None:
    """Rows: modality pairs; columns: source A, source B, then every method (labelled)."""
    import cv2

    from MedFusionLib import data_split

    rows = []
    for r, folder in enumerate(data_split.FOLDERS):
        i = _montage_index(pairs, folder)
        cells = [("A " + pairs[i].modality_a, sources[i][0]), ("B " + pairs[i].modality_b, sources[i][1])]
        for m in methods:
            column = cv2.imread(str(tiles / f"{_safe(m)}.png"), cv2.IMREAD_GRAYSCALE)
            size = column.shape[0] // len(data_split.FOLDERS)
            cells += [(m, column[r * size:(r + 1) * size])]
        row = []
        for label, image in cells:
            tile = np.clip(image, 0, 255).astype(np.uint8).copy()
            cv2.putText(tile, label[:22], (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 255, 1, cv2.LINE_AA)
            row.append(tile)
        rows.append(np.concatenate(row, axis=1))
    cv2.imwrite(str(path), np.concatenate(rows, axis=0))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="average,max,gff,mfenet,edpsn,fusioncinn")
    parser.add_argument("--every", type=int, default=1, help="every n-th validation pair of each folder")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "harvard"))
    parser.add_argument("--scorer-path", default=None)
    parser.add_argument("--out", default=None, help="folder for cddfuse_protocol.json / .md and montage.png")
    parser.add_argument("--recompute", default="", help="methods to score again although --out holds them")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from MedFusionLib import data_split

    scorer = load_scorer(args.scorer_path)
    pairs, sources = validation_pairs(args.data, args.every, scorer)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    results, montage = _previous(args), {}
    for method in methods:
        if method in results and method not in args.recompute.split(","):
            continue
        fused, sec = fuse_all(method, pairs)
        montage[method] = [fused[_montage_index(pairs, folder)] for folder in data_split.FOLDERS]
        results[method] = {"s_per_pair": sec, "every": args.every,
                           **score_per_folder(scorer, pairs, sources, fused)}
        print(f"{method}: {sec:.4f} s/pair", flush=True)
    results = {m: results[m] for m in methods}
    lines = [f"Command: `python scripts/cddfuse_table.py {' '.join(argv if argv is not None else sys.argv[1:])}`", ""]
    for folder in data_split.FOLDERS:
        n = sum(p.folder == folder for p in pairs)
        lines += [f"## {folder.replace('-', ' / ')} ({n} validation pairs)", "",
                  "| method | " + " | ".join(METRICS) + " | > CDDFuse | > max |",
                  "|---" * (len(METRICS) + 3) + "|",
                  "| CDDFuse (published) | " + " | ".join(f"{v:.2f}" for v in CDDFUSE[folder]) + " | | |"]
        for method in methods:
            values = results[method][folder]
            wins = sum(v > c for v, c in zip(values, CDDFUSE[folder]))
            wins_max = (sum(v > m for v, m in zip(values, results["max"][folder]))
                        if "max" in results and method != "max" else "")
            lines.append(f"| `{method}` | " + " | ".join(f"{v:.3f}" for v in values) + f" | {wins}/8 | {wins_max} |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.out:
        import cv2

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "cddfuse_protocol.json").write_text(json.dumps(
            {"metrics": METRICS, "cddfuse": CDDFUSE, "results": results}, indent=1))
        (out / "cddfuse_protocol.md").write_text(text + "\n")
        tiles = out / "tiles"
        tiles.mkdir(exist_ok=True)
        for method, images in montage.items():  # one column of the montage per method, kept for later runs
            cv2.imwrite(str(tiles / f"{_safe(method)}.png"), np.concatenate(images, axis=0).astype(np.uint8))
        write_montage(out / "montage.png", pairs, sources, methods, tiles)
    return 0


if __name__ == "__main__":
    sys.exit(main())
