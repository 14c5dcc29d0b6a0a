"""Choosing defaults by measurement: rank methods across every benchmark metric, and check they look clean.

``rank_methods`` reads results.csv rows (one per pair and method, as ``medfusion evaluate`` writes them) and
gives each method its mean rank over the metrics of the ``METRICS`` registry (each metric's own direction;
1 = best), per modality pair, then averaged over the modality pairs so each counts the same whatever its
number of pairs. Only the pairs every method was scored on are used.

``saturated_share`` is the visual check behind "looks clean": the share of the foreground where the fused
image is pure white although neither source is (MFEnet's paper edge lines, issue 13: ~12% of brain voxels).
"""
from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..metrics import METRICS


def read_rows(paths: Iterable[Path], labels: Optional[Mapping[str, str]] = None) -> List[dict]:
    """Rows of one or more results.csv files; ``labels`` renames methods (e.g. to spell out their options)."""
    rows = []
    for path in paths:
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                row["method"] = (labels or {}).get(row["method"], row["method"])
                rows.append(row)
    return rows


def rank_methods(rows: Sequence[dict], methods: Optional[Sequence[str]] = None,
                 metrics: Optional[Sequence[str]] = None) -> Dict[str, float]:
    """Method -> mean rank (1 = best) over ``metrics`` (default all of METRICS), averaged over modality pairs."""
    metrics = list(metrics or METRICS)
    chosen = list(dict.fromkeys(methods or [r["method"] for r in rows]))
    scores: Dict[Tuple[str, str], Dict[str, Dict[str, float]]] = defaultdict(dict)  # (pair, image) -> method
    for row in rows:
        if row["method"] in chosen:
            scores[(row["pair"], row["image"])][row["method"]] = {m: float(row[m]) for m in metrics}
    common = [key for key, by_method in scores.items() if all(m in by_method for m in chosen)]
    if not common:
        raise ValueError("No pair was scored with every method.")
    ranks_by_folder: Dict[str, List[np.ndarray]] = defaultdict(list)
    for folder in sorted({pair for pair, _ in common}):
        keys = [key for key in common if key[0] == folder]
        for metric in metrics:
            means = np.array([np.mean([scores[k][m][metric] for k in keys]) for m in chosen])
            signed = -means if METRICS[metric].higher_is_better else means
            order = signed.argsort(kind="stable")
            ranks = np.empty(len(chosen))
            ranks[order] = np.arange(1, len(chosen) + 1)
            ranks_by_folder[folder].append(ranks)
    per_folder = [np.mean(ranks, axis=0) for ranks in ranks_by_folder.values()]
    overall = np.mean(per_folder, axis=0)
    return dict(sorted(zip(chosen, overall.tolist()), key=lambda item: item[1]))


def saturated_share(a: np.ndarray, b: np.ndarray, fused: np.ndarray, foreground: float = 0.05) -> float:
    """Share of the foreground (either source > ``foreground``) where fused >= 0.995 but both sources < 0.95."""
    a, b, fused = (np.asarray(x, np.float32) for x in (a, b, fused))
    inside = np.maximum(a, b) > foreground
    invented = (fused >= 0.995) & (np.maximum(a, b) < 0.95)
    return float(invented[inside].mean()) if inside.any() else 0.0
