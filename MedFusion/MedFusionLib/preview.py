"""A PNG preview of a fusion: axial, coronal and sagittal slices through the centre of the reference volume;
columns A, B (resampled onto A), fused, and the fused image with the edge overlay.

Slices are displayed in radiological convention whatever the grid's orientation: anterior (axial) or
superior (coronal, sagittal) up, patient right on the viewer's left, anterior on the left in sagittal, with
the physical aspect ratio of the voxels.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .geometry import resample_onto, slice_layout
from .intensity import apply_window

_EDGE_COLOURS = {1: (1.0, 0.85, 0.0), 2: (0.0, 0.9, 1.0), 3: (1.0, 0.2, 0.9)}  # A yellow, B cyan, both magenta


def _oriented(volume: np.ndarray, image: sitk.Image, view: str):
    """The centre slice for ``view`` in screen orientation, plus its pixel aspect (height / width)."""
    layout = slice_layout(image, view)
    stack = layout.to_slices(volume)
    row_mm, col_mm = layout.spacing(image)
    return stack[stack.shape[0] // 2], row_mm / col_mm


def _window(image: sitk.Image, window) -> np.ndarray:
    array = sitk.GetArrayFromImage(image)
    if array.ndim == image.GetDimension() + 1:  # RGB: show as is
        return array.astype(np.float32) / (255.0 if array.dtype == np.uint8 else 1.0)
    return apply_window(array, window)[0]


def save_preview(a: sitk.Image, b: sitk.Image, result, path, titles=("A", "B"), colormap_b=None) -> Path:
    """Render the preview of ``result`` (a FusionResult of fusing a and b) to ``path`` (PNG).

    ``colormap_b``: the colour map B was fused with, so that B is shown in the colours the fusion used.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    b_on_a = _window(resample_onto(b, a, 0.0), result.windows["B"])
    if colormap_b is not None and b_on_a.ndim == a.GetDimension():
        from .colour import apply_colour_table, colour_table

        b_on_a = apply_colour_table(b_on_a, colour_table(colormap_b))
    preset_a = result.windows["A"].how.split(" ")[0].rstrip(":")  # e.g. "ct:brain", "mr", "colour"
    columns = [(f"{titles[0]} ({preset_a})", _window(a, result.windows["A"])),
               (f"{titles[1]} on {titles[0]}'s grid", b_on_a),
               (f"fused: {result.method}", _window(result.fused, None) if result.colour_source
                else sitk.GetArrayFromImage(result.fused)),
               ("edges: A yellow, B cyan, both magenta", None)]
    labels = sitk.GetArrayFromImage(result.edges) if result.edges is not None else None
    views = ("axial", "coronal", "sagittal")
    fig, axes = plt.subplots(len(views), len(columns), figsize=(3.2 * len(columns), 3.2 * len(views)))
    for row, view in enumerate(views):
        for col, (title, volume) in enumerate(columns):
            ax = axes[row, col]
            source = columns[2][1] if volume is None else volume
            plane, aspect = _oriented(source, a, view)
            ax.imshow(plane, cmap="gray", vmin=0.0, vmax=1.0, aspect=aspect, interpolation="nearest")
            if volume is None and labels is not None:
                label_plane, _ = _oriented(labels, a, view)
                overlay = np.zeros(label_plane.shape + (4,), dtype=np.float32)
                for value, rgb in _EDGE_COLOURS.items():
                    overlay[label_plane == value] = (*rgb, 1.0)
                ax.imshow(overlay, aspect=aspect, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title, fontsize=9)
            if col == 0:
                ax.set_ylabel(view, fontsize=10)
    fig.suptitle(result.summary(), fontsize=9)
    fig.tight_layout()
    out = Path(path)
    staging = out.with_name(f".{out.stem}.partial.png")  # rename when complete: never a half-written PNG
    try:
        fig.savefig(staging, dpi=90)
        os.replace(staging, out)
    finally:
        plt.close(fig)
        staging.unlink(missing_ok=True)
    return out
