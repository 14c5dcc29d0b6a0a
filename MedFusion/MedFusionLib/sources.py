"""The two inputs as streams of slabs on the reference grid, mapped to [0, 1].

Nothing volume-sized is copied: the reference (A) is read through a view of its voxels and windowed one slab
at a time; the second input (B) is resampled onto each slab's sub-grid of A, straight from its own pixel type
to float32 (linear, in physical space). So memory stays at the inputs, the output and one batch, whatever the
volume size. A colour source yields its BT.601 luma Y as the intensity and its CbCr as chroma; a scalar source
given a colour table (e.g. PET in SUV with 'hot') is windowed, coloured, and then treated the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import SimpleITK as sitk

from . import colour
from .geometry import SliceLayout, same_grid
from .intensity import Window, apply_window, choose_window, parse_preset

# Resampling sentinel outside B's field of view: no real voxel holds it, even as raw HU or SUV.
_OUTSIDE = -3.0e38
_OUTSIDE_TEST = -1.0e38


@dataclass
class Slab:
    """Slices [start, end) of one source on A's grid, in the layout's (S, H, W) orientation."""
    luma: np.ndarray  # float32 (n, H, W) in [0, 1]
    chroma: Optional[np.ndarray]  # float32 (n, H, W, 2) CbCr in [0, 1] for a colour source, else None
    inside: Optional[np.ndarray]  # bool (n, H, W): inside B's field of view (None: everywhere)


class Source:
    """One input: how its values map to [0, 1] (window or colour) and how to cut it into slabs."""

    def __init__(self, image: sitk.Image, preset, name: str, warnings: List[str], colormap=None):
        self.image = image
        self.name = name
        view = sitk.GetArrayViewFromImage(image)  # read-only view: the caller's image is never touched
        self.is_vector = view.ndim == image.GetDimension() + 1
        self.is_rgb = self.is_vector and colour.has_chroma(view)
        self.table = None
        if colormap is not None:
            if self.is_rgb:
                warnings.append(f"'{name}' is already a colour image: the colour map is ignored.")
            else:
                self.table = colour.colour_table(colormap)
        self.is_colour = self.is_rgb or self.table is not None
        if self.is_rgb:
            if parse_preset(preset).kind != "auto":
                warnings.append(f"'{name}' is a colour image: its intensity preset is ignored (RGB is used as is).")
            peak = 255.0 if image.GetPixelID() == sitk.sitkVectorUInt8 else _rgb_peak(view)
            self.window = Window(0.0, peak, "colour: BT.601 luma Y of RGB")
        else:
            grey = view[..., 0] if self.is_vector else view  # R = G = B: a grey image stored as RGB
            self.window = choose_window(grey, preset, name, eight_bit=grey.dtype == np.uint8)
        if np.issubdtype(view.dtype, np.floating):
            n_bad = int(view.size - np.count_nonzero(np.isfinite(view)))
            if n_bad:
                warnings.append(f"'{name}': {n_bad} voxel value(s) ({100.0 * n_bad / view.size:.2g}%) are NaN or "
                                f"infinite; they are treated as background (0).")

    def to_unit(self, raw: np.ndarray) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """Raw values (n, H, W[, 3]) -> luma in [0, 1] and, for a colour source, chroma (else None)."""
        if self.is_rgb:
            rgb = np.nan_to_num(raw.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0) / self.window.high
            rgb = np.clip(rgb, 0.0, 1.0)
        else:
            grey = apply_window(raw[..., 0] if self.is_vector else raw, self.window)[0]
            if self.table is None:
                return grey, None
            rgb = colour.apply_colour_table(grey, self.table)
        ycbcr = colour.rgb_to_ycbcr(rgb)
        return np.ascontiguousarray(ycbcr[..., 0]), np.ascontiguousarray(ycbcr[..., 1:])


def _rgb_peak(view: np.ndarray) -> float:
    finite_max = float(np.nanmax(np.where(np.isfinite(view), view, np.nan)))
    return 255.0 if finite_max > 1.0 else 1.0


class ReferenceSlabs:
    """A, on its own grid: slabs are windowed views of its voxels."""

    def __init__(self, source: Source, layout: SliceLayout):
        self.source = source
        self.stack = layout.to_slices(sitk.GetArrayViewFromImage(source.image))

    def slab(self, start: int, end: int) -> Slab:
        luma, chroma = self.source.to_unit(np.ascontiguousarray(self.stack[start:end]))
        return Slab(luma, chroma, None)


class MovingSlabs:
    """B on A's grid: each slab is resampled onto the matching sub-grid of A (or viewed, on the same grid)."""

    def __init__(self, source: Source, reference: sitk.Image, layout: SliceLayout):
        self.source = source
        self.reference = reference
        self.layout = layout
        self.same_grid = same_grid(source.image, reference)
        if self.same_grid:
            self.stack = layout.to_slices(sitk.GetArrayViewFromImage(source.image))
        # float64 data may exceed float32's range (3.4e38): resampling it to float32 would turn it into inf.
        wide = source.image.GetPixelID() in (sitk.sitkFloat64, sitk.sitkVectorFloat64)
        self.output_type = ((sitk.sitkVectorFloat64 if wide else sitk.sitkVectorFloat32) if source.is_vector
                            else (sitk.sitkFloat64 if wide else sitk.sitkFloat32))

    def _sub_grid(self, start: int, end: int) -> sitk.Image:
        """An empty image with the geometry of slices [start, end) of A along the layout's axis."""
        if self.layout.two_d:
            size, index = list(self.reference.GetSize()), [0, 0]
        else:
            index_axis = 2 - self.layout.array_axis
            size = list(self.reference.GetSize())
            size[index_axis] = end - start
            index = [0, 0, 0]
            index[index_axis] = start
        grid = sitk.Image(size, sitk.sitkUInt8)
        grid.SetSpacing(self.reference.GetSpacing())
        grid.SetDirection(self.reference.GetDirection())
        grid.SetOrigin(self.reference.TransformIndexToPhysicalPoint(index))
        return grid

    def slab(self, start: int, end: int) -> Slab:
        if self.same_grid:
            luma, chroma = self.source.to_unit(np.ascontiguousarray(self.stack[start:end]))
            return Slab(luma, chroma, None)
        moved = sitk.Resample(self.source.image, self._sub_grid(start, end), sitk.Transform(), sitk.sitkLinear,
                              _OUTSIDE, self.output_type)
        raw = self.layout.to_slices(sitk.GetArrayFromImage(moved))
        inside = (raw[..., 0] if self.source.is_vector else raw) > _OUTSIDE_TEST
        raw = np.where(inside[..., np.newaxis] if self.source.is_vector else inside, raw, 0.0)
        luma, chroma = self.source.to_unit(raw)
        luma[~inside] = 0.0
        if chroma is not None:
            chroma[~inside] = 0.5  # neutral chroma: no colour where B has no data
        return Slab(luma, chroma, inside)


def sample_indices(n_slices: int, at_most: int = 32) -> List[int]:
    """Evenly spread slice indices, for statistics that need not see every slice."""
    if n_slices <= at_most:
        return list(range(n_slices))
    return sorted({int(round(i)) for i in np.linspace(0, n_slices - 1, at_most)})
