"""Canny edge maps of 2D slices, as {0, 1} float maps (MFEnet's edge-enhancement branch; reusable by overlays).

``canny_edges(x)`` takes one slice (H, W), a stack (N, H, W) or a batch (N, 1, H, W), as uint8 (0..255) or as
float in [0, 1] (numpy array or torch tensor) and returns float32 maps of the same shape and kind (a torch input
gives a torch output on the same device) with values exactly 0 or 1.

Per slice, independently of the rest of the batch (so a result never depends on how slices are batched):

1. the 8-bit version of the slice: ``round(clip(x, 0, 1) * 255)`` for floats, uint8 as given;
2. a 5x5 Gaussian blur, sigma 1 (OpenCV's ``cv2.Canny`` has no smoothing step of its own, unlike Canny's
   original detector; without it MR noise fills the map);
3. ``cv2.Canny`` with the L2 norm of 3x3 Sobel gradients;
4. thresholds derived from the image when not given: ``high`` = Otsu's threshold of the non-zero L2 Sobel
   gradient magnitudes of the foreground (pixels > 0), at least 20 (below that, gradients of an 8-bit image are
   noise), and ``low = 0.4 * high`` (Canny's recommended 2:1..3:1 hysteresis ratio). A slice with no
   foreground gradient (constant, empty) has no edges. Given thresholds use the same units: L2 Sobel magnitude
   of the blurred 8-bit slice (0 .. about 1442). If only one is given the other follows the 0.4 ratio.
   This is the same rule as the engine's edge overlay, applied per slice instead of per volume.

``cv2.Canny`` returns a binary map with values {0, 255}; it is scaled to {0, 1} here. In MFEnet's edge
enhancement, ``I_f = clip(I_mf + w * (E1 + E2), 0, 1)``: with the paper's ``w = 1`` every edge pixel of either
source becomes 1 (white) after clipping, i.e. the edges are drawn as white one-pixel lines over the fused image.
"""
from __future__ import annotations

from typing import Optional, Tuple

import cv2
import numpy as np

LOW_RATIO = 0.4
MIN_HIGH = 20.0
_BLUR_KSIZE = (5, 5)
_BLUR_SIGMA = 1.0


def _to_uint8(slice_: np.ndarray) -> np.ndarray:
    if slice_.dtype == np.uint8:
        return np.ascontiguousarray(slice_)
    return np.clip(np.rint(slice_.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)


def auto_thresholds(blurred_u8: np.ndarray, foreground: np.ndarray) -> Optional[Tuple[float, float]]:
    """(low, high) for one blurred 8-bit slice (``foreground``: mask of the unblurred slice > 0); None: no edges."""
    gx = cv2.Sobel(blurred_u8, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(blurred_u8, cv2.CV_32F, 0, 1, ksize=3)
    magnitude = cv2.magnitude(gx, gy)[foreground]
    values = magnitude[magnitude > 0]
    if values.size < 16:
        return None  # nothing that could be an edge
    top = float(values.max())
    scaled = np.clip(values / top * 255.0, 0, 255).astype(np.uint8).reshape(-1, 1)
    otsu, _ = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    high = max(MIN_HIGH, float(otsu) / 255.0 * top)
    return LOW_RATIO * high, high


def _canny_slice(slice_: np.ndarray, low: Optional[float], high: Optional[float]) -> np.ndarray:
    u8 = _to_uint8(slice_)
    blurred = cv2.GaussianBlur(u8, _BLUR_KSIZE, _BLUR_SIGMA)
    if low is None and high is None:
        thresholds = auto_thresholds(blurred, u8 > 0)
        if thresholds is None:
            return np.zeros(u8.shape, np.float32)
        low_t, high_t = thresholds
    elif low is None:
        high_t = float(high)
        low_t = LOW_RATIO * high_t
    elif high is None:
        low_t = float(low)
        high_t = low_t / LOW_RATIO
    else:
        low_t, high_t = float(low), float(high)
    edges = cv2.Canny(blurred, low_t, high_t, L2gradient=True)  # {0, 255}
    return (edges > 0).astype(np.float32)


def canny_edges(batch, low: Optional[float] = None, high: Optional[float] = None):
    """Binary Canny edge maps in {0.0, 1.0} with the shape and kind of ``batch`` (see the module docstring).

    ``batch``: (H, W), (N, H, W) or (N, 1, H, W); uint8 0..255 or float in [0, 1]; numpy or torch.
    """
    torch_input = not isinstance(batch, np.ndarray) and hasattr(batch, "detach")
    if torch_input:
        device = batch.device
        array = batch.detach().cpu().numpy()
    else:
        array = np.asarray(batch)
    if array.ndim not in (2, 3, 4) or (array.ndim == 4 and array.shape[1] != 1):
        raise ValueError(f"canny_edges expects (H, W), (N, H, W) or (N, 1, H, W) slices, got shape {array.shape}.")
    shape = array.shape
    slices = array.reshape((-1,) + shape[-2:])
    out = np.zeros(slices.shape, np.float32)
    for i, slice_ in enumerate(slices):
        out[i] = _canny_slice(slice_, low, high)
    out = out.reshape(shape)
    if torch_input:
        import torch

        return torch.from_numpy(out).to(device)
    return out
