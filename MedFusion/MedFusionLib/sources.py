"""The two inputs as streams of slabs on the reference grid, mapped to [0, 1].

Nothing volume-sized is copied: the reference (A) is read through a view of its voxels and windowed one slab
at a time; the second input (B) is resampled onto each slab's sub-grid of A, straight from its own pixel type
to float32 (linear, in physical space). So memory stays at the inputs, the output and one batch, whatever the
volume size. A colour source yields its BT.601 luma Y as the intensity and its CbCr as chroma; a scalar source
given a colour table (e.g. PET in SUV with 'hot') is windowed, coloured, and then treated the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import SimpleITK as sitk

from . import colour, functional_colour
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
    # Overlay mode (functional_colour.py): float32 (n, H, W, 3) RGB colour of the functional image; its level
    # (the windowed value, or an RGB image's brightest channel) is then ``luma``, and ``chroma`` is None.
    colour: Optional[np.ndarray] = None


class Source:
    """One input: how its values map to [0, 1] (window or colour) and how to cut it into slabs."""

    def __init__(self, image: sitk.Image, preset, name: str, warnings: List[str], colormap=None,
                 colour_mode: Optional[str] = None):
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
        self.colour_mode = functional_colour.resolve_mode(colour_mode, self.table) if self.is_colour else None
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

    def to_slab(self, raw: np.ndarray, inside: Optional[np.ndarray] = None) -> Slab:
        """Raw values (n, H, W[, 3]) -> a Slab: luma in [0, 1], plus chroma (YCbCr mode) or colour (overlay).

        Outside ``inside`` (B's field of view) the slab is 0 with neutral chroma: no colour where B has no data.
        """
        if self.is_rgb:
            rgb = np.nan_to_num(raw.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0) / self.window.high
            rgb = np.clip(rgb, 0.0, 1.0)
            level = rgb.max(axis=-1) if self.colour_mode == functional_colour.OVERLAY else None
        else:
            grey = apply_window(raw[..., 0] if self.is_vector else raw, self.window)[0]
            if self.table is None:
                return _masked(Slab(grey, None, inside))
            rgb, level = colour.apply_colour_table(grey, self.table), grey
        if self.colour_mode == functional_colour.OVERLAY:
            return _masked(Slab(np.ascontiguousarray(level, dtype=np.float32), None, inside, colour=rgb))
        ycbcr = colour.rgb_to_ycbcr(rgb)
        return _masked(Slab(np.ascontiguousarray(ycbcr[..., 0]), np.ascontiguousarray(ycbcr[..., 1:]), inside))


def _masked(slab: Slab) -> Slab:
    if slab.inside is not None:
        outside = ~slab.inside
        slab.luma[outside] = 0.0
        if slab.chroma is not None:
            slab.chroma[outside] = 0.5  # neutral chroma
        if slab.colour is not None:
            slab.colour[outside] = 0.0
    return slab


def _rgb_peak(view: np.ndarray) -> float:
    finite_max = float(np.nanmax(np.where(np.isfinite(view), view, np.nan)))
    return 255.0 if finite_max > 1.0 else 1.0


class ReferenceSlabs:
    """A, on its own grid: slabs are windowed views of its voxels."""

    def __init__(self, source: Source, layout: SliceLayout):
        self.source = source
        self.stack = layout.to_slices(sitk.GetArrayViewFromImage(source.image))

    def slab(self, start: int, end: int) -> Slab:
        return self.source.to_slab(np.ascontiguousarray(self.stack[start:end]))


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
            return self.source.to_slab(np.ascontiguousarray(self.stack[start:end]))
        moved = sitk.Resample(self.source.image, self._sub_grid(start, end), sitk.Transform(), sitk.sitkLinear,
                              _OUTSIDE, self.output_type)
        raw = self.layout.to_slices(sitk.GetArrayFromImage(moved))
        inside = (raw[..., 0] if self.source.is_vector else raw) > _OUTSIDE_TEST
        raw = np.where(inside[..., np.newaxis] if self.source.is_vector else inside, raw, 0.0)
        return self.source.to_slab(raw, inside)

