"""Input handling and small filters shared by the metric modules.

Intensity convention
--------------------
Most fusion metrics were defined, and are reported in the literature, on 8-bit grey levels (0-255).
Every public metric therefore takes a ``data_range`` keyword: the value that means "full white" in
the arrays you pass. It is resolved deterministically:

* ``data_range=None`` (default): 255 for ``uint8`` arrays, 1.0 for float (and bool) arrays; any other
  integer type must state its range explicitly.
* An explicit number always wins (e.g. ``data_range=255`` for float arrays holding 0-255 values).

Images are then mapped to float64 on the 0-255 scale with :func:`to_gray255`. Values may overshoot
the range by at most ``RANGE_TOLERANCE`` of it (network outputs do, slightly) and are clipped, as
saving to an 8-bit file would; anything further outside raises :class:`InputError`, because that
almost always means the wrong convention (0-255 data passed as [0, 1]).
"""
from __future__ import annotations

import numpy as np

from MedFusionLib.errors import InputError

RANGE_TOLERANCE = 0.05  # fraction of data_range an image may overshoot before we call it a mistake


def resolve_data_range(img: np.ndarray, data_range=None) -> float:
    """The full-scale value of ``img``: explicit ``data_range``, else 255 for uint8 and 1.0 for floats."""
    if data_range is not None:
        value = float(data_range)
        if not np.isfinite(value) or value <= 0:
            raise InputError(f"data_range must be a positive number, got {data_range!r}.")
        return value
    if img.dtype == np.uint8:
        return 255.0
    if np.issubdtype(img.dtype, np.floating) or img.dtype == np.bool_:
        return 1.0
    raise InputError(
        f"Cannot tell the intensity range of a {img.dtype} image; pass data_range= (e.g. 4095 for 12-bit data)."
    )


def to_gray255(img, data_range=None) -> np.ndarray:
    """Return a float64 copy of the 2D image ``img`` on the 0-255 scale (see the module docstring)."""
    arr = np.asarray(img)
    if arr.ndim != 2:
        raise InputError(f"Fusion metrics take 2D grey-level images; got an array of shape {arr.shape}.")
    if arr.size == 0:
        raise InputError("Fusion metrics need a non-empty image.")
    full = resolve_data_range(arr, data_range)
    out = arr.astype(np.float64)
    if not np.all(np.isfinite(out)):
        raise InputError("The image contains NaN or infinite values; metrics need finite intensities.")
    low, high = float(out.min()), float(out.max())
    slack = RANGE_TOLERANCE * full
    if low < -slack or high > full + slack:
        raise InputError(
            f"Image values span [{low:g}, {high:g}], outside [0, {full:g}]; "
            "pass data_range=255 for 0-255 data or rescale the image."
        )
    np.clip(out, 0.0, full, out=out)
    if full != 255.0:
        out *= 255.0 / full
    return out


def prepare(*images, data_range=None, min_size: int = 1):
    """Map several same-shaped 2D images to the 0-255 scale; check they are at least ``min_size`` square."""
    out = [to_gray255(img, data_range) for img in images]
    shape = out[0].shape
    if any(x.shape != shape for x in out):
        raise InputError(f"Images must have the same shape; got {[x.shape for x in out]}.")
    if min(shape) < min_size:
        raise InputError(f"This metric needs images of at least {min_size}x{min_size} pixels; got {shape}.")
    return out


def gaussian_kernel_1d(size: int, sigma: float) -> np.ndarray:
    """Normalised 1D Gaussian; its outer product equals MATLAB's fspecial('gaussian', size, sigma)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    k = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return k / k.sum()


def filter_valid(img: np.ndarray, kernel_1d: np.ndarray) -> np.ndarray:
    """Separable correlation keeping only positions where the window fits (MATLAB filter2(..., 'valid'))."""
    import cv2  # imported here so that importing the metrics stays cheap

    r = (len(kernel_1d) - 1) // 2
    full = cv2.sepFilter2D(np.ascontiguousarray(img), cv2.CV_64F, kernel_1d, kernel_1d, borderType=cv2.BORDER_REFLECT)
    return full[r : full.shape[0] - r, r : full.shape[1] - r]


def sobel(img: np.ndarray, pad_mode: str):
    """3x3 Sobel responses (gx along columns, gy along rows), same size as ``img``.

    ``pad_mode`` is np.pad's mode: "constant" (zeros, as MATLAB conv2 'same') or "edge" (replicate).
    """
    p = np.pad(img, 1, mode=pad_mode)
    left = p[:-2, :-2] + 2.0 * p[1:-1, :-2] + p[2:, :-2]
    right = p[:-2, 2:] + 2.0 * p[1:-1, 2:] + p[2:, 2:]
    top = p[:-2, :-2] + 2.0 * p[:-2, 1:-1] + p[:-2, 2:]
    bottom = p[2:, :-2] + 2.0 * p[2:, 1:-1] + p[2:, 2:]
    return right - left, bottom - top


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two arrays; 0.0 when either is constant (the correlation is undefined)."""
    dx = x - x.mean()
    dy = y - y.mean()
    denom = np.sqrt(np.sum(dx * dx) * np.sum(dy * dy))
    if denom == 0.0:
        return 0.0
    return float(np.sum(dx * dy) / denom)
