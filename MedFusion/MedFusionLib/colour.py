"""Colour conversions for pseudo-colour functional images (PET, SPECT).

Standard: ITU-R BT.601 luma/chroma in the full-range (JPEG / JFIF) form, on values in [0, 1]:

    Y  =  0.299 R + 0.587 G + 0.114 B
    Cb =  0.5 - 0.168736 R - 0.331264 G + 0.5 B
    Cr =  0.5 + 0.5 R - 0.418688 G - 0.081312 B

This is what the medical-fusion literature (and OpenCV's COLOR_RGB2YCrCb) uses for the "fuse Y, keep CbCr"
scheme, so that colour keeps encoding function while Y carries the anatomy.
"""
from __future__ import annotations

import numpy as np

LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # BT.601 Y of R, G, B: the one place these constants are written
_RGB_TO_YCBCR = np.array([
    LUMA_WEIGHTS,
    [-0.168736, -0.331264, 0.5],
    [0.5, -0.418688, -0.081312],
], dtype=np.float64)
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR)
_OFFSET = np.array([0.0, 0.5, 0.5])


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) RGB in [0, 1] -> (..., 3) float32 YCbCr with Y, Cb, Cr in [0, 1]."""
    return (np.asarray(rgb, dtype=np.float32) @ _RGB_TO_YCBCR.T.astype(np.float32)) + _OFFSET.astype(np.float32)


def ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """(..., 3) YCbCr in [0, 1] -> (..., 3) float32 RGB clipped to [0, 1]."""
    rgb = (np.asarray(ycbcr, dtype=np.float32) - _OFFSET.astype(np.float32)) @ _YCBCR_TO_RGB.T.astype(np.float32)
    return np.clip(rgb, 0.0, 1.0)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma Y of (..., 3) RGB values (same scale as the input)."""
    return np.asarray(rgb, dtype=np.float32) @ _RGB_TO_YCBCR[0].astype(np.float32)


def has_chroma(rgb: np.ndarray) -> bool:
    """True unless R = G = B everywhere (a grey image saved as RGB is treated as grey)."""
    return bool(np.any(rgb[..., 0] != rgb[..., 1]) or np.any(rgb[..., 1] != rgb[..., 2]))


def colour_table(colormap) -> np.ndarray:
    """A (256, 3) float32 RGB table in [0, 1] from a colour-map name or an (N, 3|4) array.

    Names are matplotlib's (``hot``, ``inferno``, ``jet``, ``viridis``, ...; matplotlib is imported only
    here). An array is a colour table such as a Slicer colour node's: N RGB or RGBA rows, in [0, 1] or
    0..255 (alpha is dropped), resampled to 256 entries.
    """
    from .errors import InputError

    if isinstance(colormap, str):
        try:
            from matplotlib import colormaps
        except ImportError:
            raise InputError(f"Colour map '{colormap}' needs matplotlib; pass a colour table array instead.") from None
        if colormap not in colormaps:
            raise InputError(f"Unknown colour map '{colormap}'; try hot, inferno, jet or viridis.")
        return colormaps[colormap](np.linspace(0.0, 1.0, 256))[:, :3].astype(np.float32)
    table = np.asarray(colormap, dtype=np.float64)
    if table.ndim != 2 or table.shape[1] not in (3, 4) or table.shape[0] < 2 or not np.all(np.isfinite(table)):
        raise InputError("A colour table must be an N x 3 (RGB) or N x 4 (RGBA) array of finite numbers, N >= 2.")
    table = table[:, :3] / (255.0 if table.max() > 1.0 else 1.0)
    positions = np.linspace(0.0, 1.0, table.shape[0])
    samples = np.linspace(0.0, 1.0, 256)
    resampled = np.stack([np.interp(samples, positions, table[:, c]) for c in range(3)], axis=-1)
    return np.clip(resampled, 0.0, 1.0).astype(np.float32)


def apply_colour_table(unit: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> RGB (..., 3) through a (256, 3) table (nearest entry)."""
    index = np.clip(np.rint(unit * (table.shape[0] - 1)), 0, table.shape[0] - 1).astype(np.intp)
    return table[index]
