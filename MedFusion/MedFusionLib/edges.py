"""Per-slice Canny edge maps of normalised slices, for MFEnet's edge enhancement; the overlay's label convention.

(The engine's edge overlay is 3D: see edge_overlay.py.)

One rule everywhere:

1. the 8-bit version of a slice: ``round(clip(x, 0, 1) * 255)`` for floats, uint8 as given;
2. a 5x5 Gaussian blur, sigma 1 (OpenCV's ``cv2.Canny`` has no smoothing step of its own, unlike Canny's
   original detector; without it MR noise fills the map);
3. ``cv2.Canny`` with the L2 norm of 3x3 Sobel gradients;
4. automatic thresholds: ``high`` = Otsu's threshold of the non-zero L2 Sobel gradient magnitudes of the
   foreground (pixels > 0), at least 20 (below that, gradients of an 8-bit image are noise), and
   ``low = 0.4 * high`` (Canny's recommended 2:1..3:1 hysteresis ratio). Given thresholds use the same units:
   L2 Sobel magnitude of the blurred 8-bit slice (0 .. about 1442).

MFEnet's enhancement (:func:`canny_edges`) chooses thresholds per slice, so that a fused slice never depends on
how slices are batched.

``cv2.Canny`` returns {0, 255}; maps here are {0, 1}. In MFEnet's ``I_f = clip(I_mf + w * (E1 + E2), 0, 1)``
with the paper's ``w = 1``, every edge pixel of either source becomes 1 (white): edges are drawn as white
one-pixel lines over the fused image.
"""
from __future__ import annotations

from typing import Optional, Tuple

import cv2
import numpy as np

LABEL_A, LABEL_B = 1, 2  # an edge of both sources is LABEL_A + LABEL_B = 3
LOW_RATIO = 0.4
MIN_HIGH = 20.0
_MIN_GRADIENT_SAMPLES = 16


def to_uint8(slices: np.ndarray) -> np.ndarray:
    if slices.dtype == np.uint8:
        return np.ascontiguousarray(slices)
    return np.clip(np.rint(np.asarray(slices, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def _blurred(slice_u8: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(slice_u8, (5, 5), 1.0)


def _foreground_gradients(slice_u8: np.ndarray) -> np.ndarray:
    """Non-zero L2 Sobel magnitudes of the blurred slice, at the slice's foreground (non-zero) pixels."""
    blurred = _blurred(slice_u8)
    magnitude = cv2.magnitude(cv2.Sobel(blurred, cv2.CV_32F, 1, 0, ksize=3),
                              cv2.Sobel(blurred, cv2.CV_32F, 0, 1, ksize=3))[slice_u8 > 0]
    return magnitude[magnitude > 0]


def _otsu_thresholds(gradients: np.ndarray) -> Optional[Tuple[float, float]]:
    """(low, high) from gradient magnitudes, or None when there is nothing that could be an edge."""
    if gradients.size < _MIN_GRADIENT_SAMPLES:
        return None
    top = float(gradients.max())
    # OpenCV's Otsu works on uint8: scale the magnitudes into 8 bits and back.
    scaled = np.clip(gradients / top * 255.0, 0, 255).astype(np.uint8).reshape(-1, 1)
    otsu, _ = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    high = max(MIN_HIGH, float(otsu) / 255.0 * top)
    return LOW_RATIO * high, high


def _canny_slice(slice_: np.ndarray, low: Optional[float], high: Optional[float]) -> np.ndarray:
    u8 = to_uint8(slice_)
    if low is None and high is None:
        thresholds = _otsu_thresholds(_foreground_gradients(u8))
        if thresholds is None:
            return np.zeros(u8.shape, np.float32)  # constant or empty: no edges
        low, high = thresholds
    elif low is None:
        low = LOW_RATIO * float(high)
    elif high is None:
        high = float(low) / LOW_RATIO
    return (cv2.Canny(_blurred(u8), float(low), float(high), L2gradient=True) > 0).astype(np.float32)


def canny_edges(batch, low: Optional[float] = None, high: Optional[float] = None):
    """Per-slice binary Canny maps in {0.0, 1.0} with the shape and kind of ``batch``.

    ``batch``: (H, W), (N, H, W) or (N, 1, H, W); uint8 0..255 or float in [0, 1]; numpy or torch (a torch
    input gives a torch output on the same device). If only one threshold is given the other follows 0.4.
    """
    torch_input = not isinstance(batch, np.ndarray) and hasattr(batch, "detach")
    array = batch.detach().cpu().numpy() if torch_input else np.asarray(batch)
    if array.ndim not in (2, 3, 4) or (array.ndim == 4 and array.shape[1] != 1):
        raise ValueError(f"canny_edges expects (H, W), (N, H, W) or (N, 1, H, W) slices, got shape {array.shape}.")
    slices = array.reshape((-1,) + array.shape[-2:])
    out = np.stack([_canny_slice(s, low, high) for s in slices]).reshape(array.shape)
    if torch_input:
        import torch

        return torch.from_numpy(out).to(batch.device)
    return out


def edge_labels(edges_a: np.ndarray, edges_b: np.ndarray) -> np.ndarray:
    """Labelmap: 1 = edge of A only, 2 = edge of B only, 3 = edge of both."""
    return (edges_a.astype(np.uint8) * LABEL_A) + (edges_b.astype(np.uint8) * LABEL_B)
