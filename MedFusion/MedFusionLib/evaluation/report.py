"""Writing an evaluation: results.csv, results.md (mean ± sd tables, best in bold), charts/, montage.png.

Every file is written to a temporary name in the output folder and renamed into place when complete.
"""
from __future__ import annotations

import csv
import math
import re
import textwrap
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..atomic_file import write_atomically_with
from .runner import PROTOCOLS, Evaluation

SECONDS = "seconds"
OVERALL = "overall"


def columns(evaluation: Evaluation) -> List[str]:
    return ["pair", "image", "method", SECONDS, *evaluation.metrics]


def higher_is_better(column: str, protocol: str = "medfusion") -> bool:
    """The registry's direction for a metric (of the evaluation's scoring protocol); time is lower-is-better."""
    return False if column == SECONDS else PROTOCOLS[protocol][column].higher_is_better


# ----------------------------------------------------------------------------------------------- CSV


def _csv_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


def write_csv(evaluation: Evaluation, path: Path) -> Path:
    def write(tmp: Path):
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns(evaluation))
            for row in evaluation.rows:
                writer.writerow([_csv_value(row[c]) for c in columns(evaluation)])

    return write_atomically_with(path, write)


# ------------------------------------------------------------------------------------------ summaries


def summarise(rows: Sequence[dict], methods: Sequence[str], column: str) -> Dict[str, Tuple[float, float, int]]:
    """method -> (mean, population sd, n finite) of ``column`` over ``rows``; NaN/inf values are left out."""
    out = {}
    for method in methods:
        values = np.array([r[column] for r in rows if r["method"] == method], dtype=np.float64)
        finite = values[np.isfinite(values)]
        if finite.size:
            out[method] = (float(finite.mean()), float(finite.std()), int(finite.size))
        else:
            out[method] = (math.nan, math.nan, 0)
    return out


def best_methods(summary: Dict[str, Tuple[float, float, int]], column: str, protocol: str = "medfusion") -> List[str]:
    """The methods whose mean is the best for ``column`` (ties all count)."""
    means = {m: s[0] for m, s in summary.items() if np.isfinite(s[0])}
    if not means:
        return []
    best = max(means.values()) if higher_is_better(column, protocol) else min(means.values())
    return [m for m, v in means.items() if v == best]


def _decimals(values: Sequence[float]) -> int:
    finite = [abs(v) for v in values if np.isfinite(v)]
    top = max(finite) if finite else 0.0
    if top == 0.0:
        return 3
    return int(min(4, max(1, 3 - math.floor(math.log10(top)))))


def _cell(mean: float, sd: Optional[float], column: str, decimals: int) -> str:
    if not np.isfinite(mean):
        return "n/a"
    if column == SECONDS:
        return f"{mean:.3g}" + ("" if sd is None else f" ± {sd:.2g}")
    return f"{mean:.{decimals}f}" + ("" if sd is None else f" ± {sd:.{decimals}f}")


def group_rows(evaluation: Evaluation) -> List[Tuple[str, List[dict]]]:
    """(title, rows) per modality pair, then overall when there is more than one."""
    out = [(g, [r for r in evaluation.rows if r["pair"] == g]) for g in evaluation.groups]
    if len(out) > 1:
        out.append((OVERALL, list(evaluation.rows)))
    return out


def table(evaluation: Evaluation, rows: Sequence[dict], sd: bool = True) -> Tuple[List[str], Dict[str, List[str]]]:
    """Markdown lines of one methods x (time + metrics) table (mean ± sd, or the mean alone), and column -> best
    methods."""
    cols = [SECONDS, *evaluation.metrics]
    stats = {c: summarise(rows, evaluation.methods, c) for c in cols}
    best = {c: best_methods(stats[c], c, evaluation.protocol) for c in cols}
    decimals = {c: _decimals([s[0] for s in stats[c].values()]) for c in cols}
    arrows = {c: ("↑" if higher_is_better(c, evaluation.protocol) else "↓") for c in cols}
    header = ["method", *[f"{'s/slice' if c == SECONDS else c} {arrows[c]}" for c in cols]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in evaluation.methods:
        cells = [f"`{method}`"]
        for c in cols:
            mean, spread, _ = stats[c][method]
            text = _cell(mean, spread if sd else None, c, decimals[c])
            cells.append(f"**{text}**" if method in best[c] else text)
        lines.append("| " + " | ".join(cells) + " |")
    return lines, best


def leaders(evaluation: Evaluation, best: Dict[str, List[str]]) -> str:
    """'laplacian: SF, AG; gff: Q_ABF' -- the metrics each method leads on (time excluded)."""
    won: Dict[str, List[str]] = {}
    for column in evaluation.metrics:
        for method in best[column]:
            won.setdefault(method, []).append(column)
    parts = [f"`{m}` {', '.join(won[m])}" for m in evaluation.methods if m in won]
    return "; ".join(parts) if parts else "none"


def markdown(evaluation: Evaluation, header: Sequence[str] = ()) -> str:
    n_pairs = len({(r["pair"], r["image"]) for r in evaluation.rows})
    shapes = ", ".join(f"{h}x{w}" for h, w in evaluation.slice_shapes)
    lines = ["# MedFusion evaluation", ""]
    lines += [f"- {h}" for h in header]
    lines += [
        f"- Pairs: {n_pairs} ({', '.join(evaluation.groups)}); methods: {', '.join(evaluation.methods)}; "
        f"{len(evaluation.metrics)} metrics from `MedFusionLib.metrics`.",
        f"- Cells: mean ± sd (population) over the pairs; **bold** = best mean of the column, using each "
        f"metric's direction from the `METRICS` registry (↑ higher is better, ↓ lower is better). "
        f"Metrics on the 0-255 scale where the literature uses it (see `MedFusionLib.metrics`).",
        f"- s/slice: seconds of the method per {shapes} slice on {evaluation.settings['device']} "
        f"(batch {evaluation.settings['batch'] or 'default'}, torch threads {evaluation.settings['torch_threads']}); "
        f"fusion only, measured around each batch with time.perf_counter (no file reading, normalisation or "
        f"scoring; each method warmed up on one slice first).",
    ]
    lines += [f"- Note: {note}" for note in evaluation.notes]
    nan_counts = {c: sum(1 for r in evaluation.rows if not np.isfinite(r[c])) for c in evaluation.metrics}
    undefined = [f"{c} ({n})" for c, n in nan_counts.items() if n]
    if undefined:
        lines.append(f"- Undefined (NaN/inf) values left out of the means: {', '.join(undefined)}.")
    for title, rows in group_rows(evaluation):
        n = len({(r["pair"], r["image"]) for r in rows})
        lines += ["", f"## {'Overall' if title == OVERALL else title} ({n} pairs)", ""]
        body, best = table(evaluation, rows)
        lines += body
        lines += ["", f"Best per metric: {leaders(evaluation, best)}."]
    if evaluation.warnings:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in evaluation.warnings]
    return "\n".join(lines) + "\n"


def write_markdown(evaluation: Evaluation, path: Path, header: Sequence[str] = ()) -> Path:
    text = markdown(evaluation, header)
    return write_atomically_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


# --------------------------------------------------------------------------------------------- charts


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def chart_title(column: str, width_inches: float, fontsize: float = 9.0, protocol: str = "medfusion") -> str:
    """The chart's title, wrapped so that it fits ``width_inches`` at ``fontsize`` points."""
    if column == SECONDS:
        title = "Fusion time per slice (s), lower is better"
    else:
        spec = PROTOCOLS[protocol][column]
        title = f"{column}: {spec.description} ({'higher' if spec.higher_is_better else 'lower'} is better)"
    # ~0.6 em per character of DejaVu Sans on average, with a margin for the axes' padding.
    return textwrap.fill(title, width=max(20, int(0.9 * width_inches * 72.0 / (0.6 * fontsize))))


def chart_figure(evaluation: Evaluation, column: str, groups=None):
    """The bar chart of one metric (or time): groups = modality pairs (+ overall), bars = methods, sd bars."""
    plt = _pyplot()
    groups = group_rows(evaluation) if groups is None else groups
    n_methods = len(evaluation.methods)
    width = 0.8 / n_methods
    colours = plt.get_cmap("tab10").colors
    stats = [summarise(rows, evaluation.methods, column) for _, rows in groups]
    fig_width = max(5.0, 1.2 + 1.1 * len(groups) * max(1, n_methods) * 0.35)
    fig, ax = plt.subplots(figsize=(fig_width, 3.4))
    x = np.arange(len(groups))
    for k, method in enumerate(evaluation.methods):
        means = [s[method][0] for s in stats]
        sds = [s[method][1] for s in stats]
        ax.bar(x + (k - (n_methods - 1) / 2) * width, means, width, yerr=sds, capsize=2, label=method,
               color=colours[k % len(colours)], error_kw={"elinewidth": 0.8})
    ax.set_xticks(x, [g for g, _ in groups])
    ax.set_title(chart_title(column, fig_width, protocol=evaluation.protocol), fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=min(n_methods, 6), loc="upper center", bbox_to_anchor=(0.5, -0.1),
              frameon=False)
    fig.tight_layout()
    return fig


def write_charts(evaluation: Evaluation, folder: Path, dpi: int = 80) -> List[Path]:
    """One bar chart per metric (and for time), see chart_figure."""
    plt = _pyplot()
    groups = group_rows(evaluation)
    written = []
    for column in [SECONDS, *evaluation.metrics]:
        fig = chart_figure(evaluation, column, groups)
        path = folder / f"{column}.png"
        written.append(write_atomically_with(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png")))
        plt.close(fig)
    return written


# -------------------------------------------------------------------------------------------- montage

# Fixed pixel layout, so that every tile is MONTAGE_TILE_PX wide whatever the number of methods.
MONTAGE_TILE_PX, MONTAGE_DPI = 256, 100
MONTAGE_TITLE_PX, MONTAGE_LABEL_PX, MONTAGE_GAP_PX = 48, 30, 8
MONTAGE_FONT_PT = 10  # 10 pt at 100 dpi: ~14 px high, readable at 100% zoom
_TITLE_CHARS = 30  # about what one tile-wide line holds at that size


def tile_title(label: str, width: int = _TITLE_CHARS) -> str:
    """A tile's title on at most a few lines: long method labels break after '[' and ','."""
    lines: List[str] = []
    for piece in re.split(r"(?<=[\[,])", label):
        if lines and len(lines[-1]) + len(piece) <= width:
            lines[-1] += piece
        else:
            lines.append(piece)
    return "\n".join(lines)


def montage_size(n_rows: int, n_cols: int) -> Tuple[int, int]:
    """(width, height) in pixels of a montage with that many rows and tile columns."""
    width = MONTAGE_LABEL_PX + n_cols * (MONTAGE_TILE_PX + MONTAGE_GAP_PX)
    height = n_rows * (MONTAGE_TITLE_PX + MONTAGE_TILE_PX + MONTAGE_GAP_PX)
    return width, height


def montage_tile_origin(row: int, col: int) -> Tuple[int, int]:
    """(x, y) of the top-left pixel of tile (row, col) in the montage PNG."""
    return (MONTAGE_LABEL_PX + col * (MONTAGE_TILE_PX + MONTAGE_GAP_PX),
            row * (MONTAGE_TITLE_PX + MONTAGE_TILE_PX + MONTAGE_GAP_PX) + MONTAGE_TITLE_PX)


def write_montage(evaluation: Evaluation, path: Path) -> Optional[Path]:
    """Rows: one pair per modality folder (its middle image) or a few slices of a volume pair; columns: the
    two sources, then each method, every tile MONTAGE_TILE_PX square with its title above it. Colour images
    are shown in colour, grey ones in grey."""
    if not evaluation.montage:
        return None
    plt = _pyplot()
    n_cols = 2 + len(evaluation.methods)
    n_rows = len(evaluation.montage)
    width, height = montage_size(n_rows, n_cols)
    fig = plt.figure(figsize=(width / MONTAGE_DPI, height / MONTAGE_DPI), dpi=MONTAGE_DPI)
    for r, row in enumerate(evaluation.montage):
        tiles = list(row.sources) + [(m, row.fused.get(m)) for m in evaluation.methods]
        for c, (title, image) in enumerate(tiles):
            x, y = montage_tile_origin(r, c)
            ax = fig.add_axes((x / width, 1.0 - (y + MONTAGE_TILE_PX) / height, MONTAGE_TILE_PX / width,
                               MONTAGE_TILE_PX / height))
            ax.set_xticks([])
            ax.set_yticks([])
            if image is not None:
                ax.imshow(image, cmap=None if image.ndim == 3 else "gray", vmin=0.0, vmax=1.0,
                          interpolation="nearest", aspect=row.aspect)
            ax.set_title(tile_title(title), fontsize=MONTAGE_FONT_PT, fontweight="normal" if c < 2 else "bold",
                         pad=3)
        y_middle = 1.0 - (montage_tile_origin(r, 0)[1] + MONTAGE_TILE_PX / 2) / height
        fig.text(MONTAGE_LABEL_PX / 2 / width, y_middle, row.label, rotation=90, ha="center", va="center",
                 fontsize=MONTAGE_FONT_PT)
    write_atomically_with(path, lambda tmp: fig.savefig(tmp, dpi=MONTAGE_DPI, format="png"))
    plt.close(fig)
    return path


def write_all(evaluation: Evaluation, out: Path, header: Sequence[str] = ()) -> Dict[str, Path]:
    out = Path(out)
    paths = {"csv": write_csv(evaluation, out / "results.csv"),
             "markdown": write_markdown(evaluation, out / "results.md", header)}
    paths["charts"] = out / "charts"
    write_charts(evaluation, paths["charts"])
    montage = write_montage(evaluation, out / "montage.png")
    if montage is not None:
        paths["montage"] = montage
    return paths
