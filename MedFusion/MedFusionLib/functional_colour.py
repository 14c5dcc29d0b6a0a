"""How a functional colour image (PET, SPECT) is shown in the fused RGB, so that its colour keeps its meaning.

Two display modes, chosen per colour map:

- ``ycbcr`` for **hue-encoded** maps (rainbow, jet, Slicer's PET-Rainbow2, the Harvard pseudo-colour images):
  uptake is read from the hue, so the fused image takes its brightness (Y) from the fusion and keeps the
  functional image's chroma (CbCr). Brightness carries anatomy, hue carries function.
- ``overlay`` for **luminance-encoded** maps (hot, inferno, viridis, Slicer's PET-Heat and PET-Rainbow, which
  despite its name runs black - orange - yellow - white: brightness rises with the value): there, brightness
  *is* the uptake, and replacing it with anatomy makes hot spots look cold (olive-green or grey-blue at half
  brightness). So, as on a PET/CT workstation, the fused image is the grey
  fusion of the two sources, and the functional colour is laid over it where the uptake is above a threshold:
  no colour below ``OVERLAY_START`` of the functional window, fading in up to ``OVERLAY_FULL``, and the colour
  map's own colour at full opacity above (the hottest voxels are the brightest, warmest colour).

``auto`` picks ``overlay`` when the colour table's BT.601 luma rises monotonically over most of the range,
else ``ycbcr``; an RGB image (no table) is treated as hue-encoded. The other mode stays selectable.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .colour import luminance, ycbcr_to_rgb
from .errors import InputError

YCBCR, OVERLAY, AUTO = "ycbcr", "overlay", "auto"
COLOUR_MODES = (AUTO, YCBCR, OVERLAY)
# Overlay opacity ramps from 0 at OVERLAY_START to 1 at OVERLAY_FULL (fractions of the functional window):
# tissue with little uptake stays untinted grey anatomy; above OVERLAY_FULL the colour map shows as it is.
OVERLAY_START, OVERLAY_FULL = 0.2, 0.5
# A table is luminance-encoded when its luma never falls more than LUMA_DROP below its running maximum and
# spans at least LUMA_SPAN (hot: 0 -> 1; jet, rainbow and Slicer's PET-Rainbow2 rise then fall; PET-DICOM
# dips by 0.09).
LUMA_DROP, LUMA_SPAN = 0.05, 0.5


def is_luminance_encoded(table: np.ndarray) -> bool:
    """True when brightness rises with the value along the (N, 3) RGB table (hot, PET-Heat, inferno)."""
    y = luminance(np.asarray(table, np.float32))
    fall = float(np.max(np.maximum.accumulate(y) - y))
    return bool(fall <= LUMA_DROP and y[-1] - y[0] >= LUMA_SPAN)


def resolve_mode(mode: Optional[str], table: Optional[np.ndarray]) -> str:
    """The display mode for a functional source: ``mode`` as given, or for ``auto`` the one its map needs."""
    key = (mode or AUTO).strip().lower()
    if key not in COLOUR_MODES:
        raise InputError(f"Unknown colour mode '{mode}'; choose one of: {', '.join(COLOUR_MODES)}.")
    if key != AUTO:
        return key
    return OVERLAY if table is not None and is_luminance_encoded(table) else YCBCR


def overlay_opacity(level: np.ndarray) -> np.ndarray:
    """Opacity of the functional colour for functional levels in [0, 1]."""
    return np.clip((level - OVERLAY_START) / (OVERLAY_FULL - OVERLAY_START), 0.0, 1.0).astype(np.float32)


def overlay(grey: np.ndarray, level: np.ndarray, colour: np.ndarray,
            strength: Optional[np.ndarray] = None) -> np.ndarray:
    """Thresholded colour overlay: RGB (..., 3) in [0, 1] from the grey fusion, the functional level and colour.

    Mixing with grey adds the same amount to R, G and B, so the overlay keeps the colour map's hue exactly.
    ``strength`` (0..1, e.g. the field-of-view weight) scales the opacity.
    """
    alpha = overlay_opacity(level)
    if strength is not None:
        alpha = alpha * strength
    alpha = alpha[..., np.newaxis]
    return np.clip((1.0 - alpha) * grey[..., np.newaxis] + alpha * colour, 0.0, 1.0)


def compose(fused_luma: np.ndarray, functional_slab, strength: Optional[np.ndarray] = None) -> np.ndarray:
    """The fused RGB of one batch: ``functional_slab`` is the colour source's Slab (overlay colour or CbCr).

    ``strength`` (0..1 per voxel, the field-of-view weight of B) fades the functional colour in across B's
    border, as the fusion itself fades in: no colour step at the border.
    """
    if functional_slab.colour is not None:
        return overlay(fused_luma, functional_slab.luma, functional_slab.colour, strength)
    chroma = functional_slab.chroma
    if strength is not None:
        chroma = 0.5 + strength[..., np.newaxis] * (chroma - 0.5)  # 0.5 = neutral chroma
    return ycbcr_to_rgb(np.concatenate([fused_luma[..., np.newaxis], chroma], axis=-1))
