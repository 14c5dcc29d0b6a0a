"""A PNG preview of a fusion: axial, coronal and sagittal slices of the reference volume (one row for a 2D pair);
columns A, B (resampled onto A), fused, and, when edges were computed, the fused image with the edge overlay.

Slices are displayed in radiological convention whatever the grid's orientation: anterior (axial) or
superior (coronal, sagittal) up, patient right on the viewer's left, anterior on the left in sagittal, with
the physical aspect ratio of the voxels; orientation letters on every panel say so. Column titles say which
input is which (name, role, intensity mapping); the slice shown is the centre one unless ``slices`` picks it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np
import SimpleITK as sitk

from .atomic_file import write_atomically_with
from .errors import InputError
from .geometry import resample_onto, slice_layout
from .intensity import apply_window

_EDGE_COLOURS = {1: (1.0, 0.85, 0.0), 2: (0.0, 0.9, 1.0), 3: (1.0, 0.2, 0.9)}  # A yellow, B cyan, both magenta
VIEWS = ("axial", "coronal", "sagittal")
# Screen edges (top, bottom, left, right) of each view in radiological convention (geometry._SCREEN).
ORIENTATION_LETTERS = {"axial": ("A", "P", "R", "L"), "coronal": ("S", "I", "R", "L"),
                       "sagittal": ("S", "I", "A", "P")}
SliceChoice = Union[None, float, Dict[str, int]]


def parse_slices(spec: Optional[str]) -> SliceChoice:
    """'0.3' (that fraction of each view's slices) or 'axial=20,coronal=100' (slice indices); None = centre."""
    if spec is None or not str(spec).strip():
        return None
    text = str(spec).strip()
    if "=" not in text:
        try:
            fraction = float(text)
        except ValueError:
            fraction = -1.0
        if not 0.0 <= fraction <= 1.0:
            raise InputError(f"Preview slice '{spec}' must be a fraction from 0 to 1 or VIEW=INDEX pairs such as "
                             f"axial=20,coronal=100.")
        return fraction
    chosen = {}
    for item in text.split(","):
        view, _, index = item.partition("=")
        view = view.strip().lower()
        if view not in VIEWS or not index.strip().lstrip("-").isdigit():
            raise InputError(f"Preview slice '{item.strip()}' must look like axial=20 (views: {', '.join(VIEWS)}).")
        chosen[view] = int(index)
    return chosen


def _slice_index(choice: SliceChoice, view: str, count: int) -> int:
    if choice is None:
        return count // 2
    if isinstance(choice, float):
        return min(count - 1, int(round(choice * (count - 1))))
    index = choice.get(view, count // 2)
    if not 0 <= index < count:
        raise InputError(f"Preview slice {view}={index} is outside the {count} {view} slices (0..{count - 1}).")
    return index


def _view_counts(image: sitk.Image) -> Dict[str, int]:
    """Number of slices of each view of ``image`` (1 for a 2D image)."""
    if image.GetDimension() == 2:
        return {"axial": 1}
    shape = tuple(image.GetSize()[::-1])
    empty = np.broadcast_to(np.uint8(0), shape)  # no memory: only the layout's shape is needed
    return {view: slice_layout(image, view).to_slices(empty).shape[0] for view in VIEWS}


def check_slices(image: sitk.Image, choice: SliceChoice) -> None:
    """Raise InputError now (before any fusion) if ``choice`` names a slice ``image`` does not have."""
    for view, count in _view_counts(image).items():
        _slice_index(choice, view, count)


def _oriented(volume: np.ndarray, image: sitk.Image, view: str, index: int):
    """Slice ``index`` for ``view`` in screen orientation, plus its pixel aspect (height / width)."""
    layout = slice_layout(image, view)
    stack = layout.to_slices(volume)
    row_mm, col_mm = layout.spacing(image)
    return stack[index], row_mm / col_mm


def _window(image: sitk.Image, window) -> np.ndarray:
    array = sitk.GetArrayFromImage(image)
    if array.ndim == image.GetDimension() + 1:  # RGB: show as is
        return array.astype(np.float32) / (255.0 if array.dtype == np.uint8 else 1.0)
    return apply_window(array, window)[0]


def _short(text: str, at_most: int = 34) -> str:
    return text if len(text) <= at_most else text[: at_most - 1] + "…"


def _letters(ax, view: str) -> None:
    top, bottom, left, right = ORIENTATION_LETTERS[view]
    style = dict(color="yellow", fontsize=10, fontweight="bold", transform=ax.transAxes)
    ax.text(0.5, 0.98, top, ha="center", va="top", **style)
    ax.text(0.5, 0.02, bottom, ha="center", va="bottom", **style)
    ax.text(0.02, 0.5, left, ha="left", va="center", **style)
    ax.text(0.98, 0.5, right, ha="right", va="center", **style)


def preview_figure(a: sitk.Image, b: sitk.Image, result, titles=("A", "B"), colormap_b=None,
                   slices: SliceChoice = None):
    """The preview as a matplotlib figure (see save_preview)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    b_on_a = _window(resample_onto(b, a, 0.0), result.windows["B"])
    if colormap_b is not None and b_on_a.ndim == a.GetDimension():
        from .colour import apply_colour_table, colour_table

        b_on_a = apply_colour_table(b_on_a, colour_table(colormap_b))
    fused = _window(result.fused, None) if result.colour_source else sitk.GetArrayFromImage(result.fused)
    colour = f", colour {result.colour_mode}" if getattr(result, "colour_mode", None) else ""
    columns = [(f"A = {titles[0]} (reference)\n{_short(result.windows['A'].how)}", _window(a, result.windows["A"])),
               (f"B = {titles[1]}, resampled onto A\n{_short(result.windows['B'].how)}", b_on_a),
               (f"fused: {result.method}\n{result.slices} {result.axis} slice(s){colour}", fused)]
    labels = sitk.GetArrayFromImage(result.edges) if result.edges is not None else None
    if labels is not None:
        columns.append(("fused + edges\nA yellow, B cyan, both magenta", None))
    two_d = a.GetDimension() == 2
    views = ("axial",) if two_d else VIEWS
    fig, axes = plt.subplots(len(views), len(columns), figsize=(3.4 * len(columns), 3.4 * len(views) + 0.5),
                             squeeze=False)
    for row, view in enumerate(views):
        count = _view_counts(a)[view]
        index = 0 if two_d else _slice_index(slices, view, count)
        for col, (title, volume) in enumerate(columns):
            ax = axes[row, col]
            source = fused if volume is None else volume
            plane, aspect = _oriented(source, a, view, index)
            ax.imshow(plane, cmap="gray", vmin=0.0, vmax=1.0, aspect=aspect, interpolation="nearest")
            if volume is None:
                label_plane, _ = _oriented(labels, a, view, index)
                overlay = np.zeros(label_plane.shape + (4,), dtype=np.float32)
                for value, rgb in _EDGE_COLOURS.items():
                    overlay[label_plane == value] = (*rgb, 1.0)
                ax.imshow(overlay, aspect=aspect, interpolation="nearest")
            if not two_d:  # a 2D image carries no anatomical orientation
                _letters(ax, view)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title, fontsize=9)
            if col == 0:
                ax.set_ylabel("2D image" if two_d else f"{view} {index + 1}/{count}", fontsize=10)
    fig.suptitle(result.summary(), fontsize=9)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.35 / fig.get_figheight()))  # room for the summary line
    return fig


def save_preview(a: sitk.Image, b: sitk.Image, result, path, titles=("A", "B"), colormap_b=None,
                 slices: SliceChoice = None) -> Path:
    """Render the preview of ``result`` (a FusionResult of fusing a and b) to ``path`` (PNG).

    ``colormap_b``: the colour map B was fused with, so that B is shown in the colours the fusion used.
    ``slices``: which slice each view shows (see parse_slices); the centre one by default.
    """
    import matplotlib.pyplot as plt

    fig = preview_figure(a, b, result, titles, colormap_b, slices)
    try:  # renamed when complete: never a half-written PNG
        return write_atomically_with(Path(path), lambda temporary: fig.savefig(temporary, dpi=90, format="png"))
    finally:
        plt.close(fig)
