"""Canny edge maps of the normalised sources, for overlays and for edge enhancement.

Canny (OpenCV, L2 gradient, 3x3 Sobel) runs on the 8-bit version of a [0, 1] slice after a Gaussian blur
(sigma 1, 5x5): OpenCV's Canny has no smoothing step of its own and MR noise would otherwise fill the map.

Automatic thresholds are chosen once per volume, not per slice, so that a nearly empty slice does not get
its noise promoted to "edges": ``high`` is Otsu's threshold of the Sobel gradient magnitudes of the
foreground (non-zero) pixels of the whole stack, and ``low = 0.4 * high`` (Canny's recommended 2:1-3:1
hysteresis ratio). Given thresholds use the same units: L2 Sobel magnitude of the 8-bit slice (0..~1442).
"""
from __future__ import annotations

from typing import Optional, Tuple

import cv2
import numpy as np

LABEL_A, LABEL_B, LABEL_BOTH = 1, 2, 3
_LOW_RATIO = 0.4
_MIN_HIGH = 20.0  # below this, gradients are noise on an 8-bit scale
_MAX_SAMPLE_SLICES = 32


def to_uint8(slices: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(slices, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def _smoothed(slice_u8: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(slice_u8, (5, 5), 1.0)


def _gradient_magnitude(slice_u8: np.ndarray) -> np.ndarray:
    smooth = _smoothed(slice_u8)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.magnitude(gx, gy)


def auto_thresholds(slices: np.ndarray) -> Tuple[float, float]:
    """(low, high) for a stack of [0, 1] slices shaped (S, H, W); see the module docstring."""
    stack = np.asarray(slices)
    step = max(1, stack.shape[0] // _MAX_SAMPLE_SLICES)
    magnitudes = [_gradient_magnitude(to_uint8(s))[s > 0] for s in stack[::step]]
    values = np.concatenate([m.ravel() for m in magnitudes]) if magnitudes else np.zeros(0, np.float32)
    values = values[values > 0]
    if values.size < 16:
        return _LOW_RATIO * _MIN_HIGH, _MIN_HIGH
    # Otsu on magnitudes scaled into 8 bits (OpenCV's Otsu works on uint8).
    top = float(values.max())
    scaled = np.clip(values / top * 255.0, 0, 255).astype(np.uint8).reshape(-1, 1)
    otsu, _ = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    high = max(_MIN_HIGH, float(otsu) / 255.0 * top)
    return _LOW_RATIO * high, high


def canny(slices: np.ndarray, thresholds: Optional[Tuple[float, float]] = None) -> np.ndarray:
    """Binary edge maps (S, H, W) bool of [0, 1] slices; thresholds automatic per stack unless given."""
    stack = np.asarray(slices)
    low, high = thresholds if thresholds is not None else auto_thresholds(stack)
    out = np.zeros(stack.shape, dtype=bool)
    for index, s in enumerate(stack):
        out[index] = cv2.Canny(_smoothed(to_uint8(s)), low, high, L2gradient=True) > 0
    return out


def edge_labels(edges_a: np.ndarray, edges_b: np.ndarray) -> np.ndarray:
    """Labelmap: 1 = edge of A only, 2 = edge of B only, 3 = edge of both."""
    return (edges_a.astype(np.uint8) * LABEL_A) + (edges_b.astype(np.uint8) * LABEL_B)


def validate_thresholds(thresholds) -> Optional[Tuple[float, float]]:
    from .errors import InputError

    if thresholds is None:
        return None
    try:
        low, high = (float(t) for t in thresholds)
    except (TypeError, ValueError):
        raise InputError("Edge thresholds must be two numbers: LOW HIGH.") from None
    if not (np.isfinite(low) and np.isfinite(high) and 0 <= low <= high):
        raise InputError(f"Edge thresholds must satisfy 0 <= LOW <= HIGH, not {low:g} and {high:g}.")
    return low, high
