"""Progress bars of ``medfusion evaluate``: one overall bar across folders and methods, with a time estimate,
above a bar for the (folder, method) being scored.

The overall bar counts (pair, method) results: one unit per slice once it is fused and scored. Its rate is the
average since the start (tqdm ``smoothing=0``), so the time estimate includes the fusion time of every method so
far, not only the last burst of scoring.
"""
from __future__ import annotations

import sys
from typing import Optional


class Bar:
    """A tqdm bar (or nothing when disabled); ``overall`` is advanced with it."""

    def __init__(self, enabled: bool, total: int, label: str, overall: Optional["Bar"] = None, position: int = 1,
                 leave: bool = False, smoothing: float = 0.3, unit: str = "slice"):
        self.bar, self.overall = None, overall
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=unit, desc=label, file=sys.stderr, leave=leave, position=position,
                            smoothing=smoothing, dynamic_ncols=True)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)
        if self.overall is not None:
            self.overall.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def overall_bar(enabled: bool, n_results: int) -> Bar:
    """The bar across the whole evaluation: ``n_results`` = slices to score x methods."""
    return Bar(enabled, n_results, "overall (slices x methods)", position=0, leave=True, smoothing=0.0,
               unit="result")


def write(message: str) -> None:
    """Print a line to stdout without breaking the progress bars on stderr (tqdm clears and redraws them)."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stdout)
    sys.stdout.flush()
