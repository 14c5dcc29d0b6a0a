"""The CDDFuse scorer's protocol: the 8 metrics of its published medical-fusion tables, scored its way.

CDDFuse (Zhao et al., CVPR 2023) reports EN, SD, SF, MI, SCD, VIF, Qabf and SSIM from its repository's
``utils/Evaluator.py`` (run by its ``test_MIF.py``). This module reimplements those formulas (no code of
theirs is used) so that our methods can be scored exactly as those tables were:

* Images: 8-bit grey, read as OpenCV reads them there (``imread`` in colour, float32 BGR -> grey with the
  BT.601 weights, ``np.round``): a grey image keeps its values, a colour one becomes round(0.299 R + 0.587 G
  + 0.114 B). :func:`cddfuse_grey` does this for arrays; all metrics take such 0-255 arrays.
* EN: entropy of the grey-level histogram, bits. SD: population std, 0-255. SF: sqrt(mean(dx^2) + mean(dy^2)),
  neighbour differences, 0-255.
* MI: MI(F, A) + MI(F, B) from the joint grey-level histograms, as scikit-learn's ``mutual_info_score``,
  which the scorer calls: natural logarithm, i.e. **nats** (not bits; x 1.4427 for bits).
* SCD: corr(F - B, A) + corr(F - A, B) (undefined, NaN, when an image is constant).
* VIF: VIFP(A, F) + VIFP(B, F), Sheikh & Bovik's pixel-domain multi-scale VIF (4 scales, Gaussian windows
  17/9/5/3 with sigma N/5, 'valid' filtering, decimation by 2, sigma_n^2 = 2, sums over scales before the
  ratio; 1 where undefined) -- the scorer's ``VIFF``, summed over both sources.
* Qabf: Xydeas-Petrovic Q^{AB/F} with the standard constants and zero-padded Sobel, and the scorer's rule
  that G^{AF} = g_F (not 1) where g_A == g_F.
* SSIM: scikit-image ``structural_similarity`` defaults, SSIM(F, A) + SSIM(F, B): 7x7 uniform window,
  sample covariance, K = 0.01 / 0.03, and data_range = 2 -- the range scikit-image 0.19 (the scorer's
  version) assumed for float32 images, whatever their values (newer versions refuse to guess).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Iterable

import numpy as np

from ..errors import InputError
from ._common import Prepared, filter_valid, pearson
from .gradient import _edges, edge_preservation_of
from .structural import _viff_scale_maps

PROTOCOL = "cddfuse"
VIF_NOISE_VAR = 2.0  # sigma_n^2 of the scorer's VIF, in (0-255 units)^2
SSIM_WINDOW, SSIM_DATA_RANGE, SSIM_K1, SSIM_K2 = 7, 2.0, 0.01, 0.03


def cddfuse_grey(image) -> np.ndarray:
    """0-255 grey levels (float64) of an 8-bit image as the scorer reads it: grey kept, RGB (..., 3) ->
    round(0.299 R + 0.587 G + 0.114 B) computed in float32 as OpenCV does, rounded half to even (np.round)."""
    import cv2

    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise InputError(f"The CDDFuse protocol scores 8-bit images; got {array.dtype} data.")
    if array.ndim == 3 and array.shape[-1] == 3:
        return np.round(cv2.cvtColor(array.astype(np.float32), cv2.COLOR_RGB2GRAY)).astype(np.float64)
    if array.ndim != 2:
        raise InputError(f"The CDDFuse protocol scores 2D grey or RGB images; got an array of shape {array.shape}.")
    return array.astype(np.float64)


def entropy(f: np.ndarray) -> float:
    histogram = np.bincount(np.round(f).astype(np.intp).ravel(), minlength=256) / f.size
    nonzero = histogram[histogram > 0]
    return float(-np.sum(nonzero * np.log2(nonzero)))


def standard_deviation(f: np.ndarray) -> float:
    return float(np.std(f))


def spatial_frequency(f: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.diff(f, axis=1) ** 2) + np.mean(np.diff(f, axis=0) ** 2)))


def _mutual_information_nats(x: np.ndarray, y: np.ndarray) -> float:
    levels_x, levels_y = np.round(x).astype(np.intp).ravel(), np.round(y).astype(np.intp).ravel()
    joint = np.bincount(levels_x * 256 + levels_y, minlength=256 * 256).reshape(256, 256) / levels_x.size
    outer = joint.sum(axis=1)[:, None] * joint.sum(axis=0)[None, :]
    cells = joint > 0
    return float(np.sum(joint[cells] * np.log(joint[cells] / outer[cells])))


def mutual_information(a, b, f) -> float:
    return _mutual_information_nats(f, a) + _mutual_information_nats(f, b)


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; NaN where an image is constant, as the scorer's formula gives."""
    return pearson(x, y) if np.ptp(x) > 0 and np.ptp(y) > 0 else float("nan")


def scd(a, b, f) -> float:
    return _correlation(a, f - b) + _correlation(b, f - a)


def _vifp(ref: Prepared, dist: Prepared) -> float:
    maps = _viff_scale_maps(ref, dist, VIF_NOISE_VAR)
    num = sum(float(np.sum(vid)) for vid, _, _ in maps)
    den = sum(float(np.sum(vind)) for _, vind, _ in maps)
    value = num / den if den != 0 else float("nan")
    return 1.0 if np.isnan(value) else value


def vif(a, b, f) -> float:
    a, b, f = Prepared(a), Prepared(b), Prepared(f)
    return _vifp(a, f) + _vifp(b, f)


def qabf(a, b, f) -> float:
    a, b, f = Prepared(a), Prepared(b), Prepared(f)
    (g_a, o_a), (g_b, o_b), (g_f, o_f) = _edges(a), _edges(b), _edges(f)

    def preservation(g_src, o_src):
        # The scorer's ratio: min/max, except g_F itself where the strengths are equal.
        ratio = np.where(g_src > g_f, g_f / np.where(g_src > g_f, g_src, 1.0), g_src / np.where(g_f > 0, g_f, 1.0))
        return edge_preservation_of(np.where(g_src == g_f, g_f, ratio), o_src, o_f)

    denominator = np.sum(g_a + g_b)
    if denominator == 0:
        return float("nan")
    return float(np.sum(preservation(g_a, o_a) * g_a + preservation(g_b, o_b) * g_b) / denominator)


def _ssim(x: np.ndarray, y: np.ndarray) -> float:
    box = np.full(SSIM_WINDOW, 1.0 / SSIM_WINDOW)
    c1, c2 = (SSIM_K1 * SSIM_DATA_RANGE) ** 2, (SSIM_K2 * SSIM_DATA_RANGE) ** 2
    n = SSIM_WINDOW * SSIM_WINDOW
    ux, uy = filter_valid(x, box), filter_valid(y, box)
    vx = (filter_valid(x * x, box) - ux * ux) * n / (n - 1)
    vy = (filter_valid(y * y, box) - uy * uy) * n / (n - 1)
    vxy = (filter_valid(x * y, box) - ux * uy) * n / (n - 1)
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return float(np.mean(s))


def ssim(a, b, f) -> float:
    return _ssim(f, a) + _ssim(f, b)


def _fused_only(metric):
    return lambda a, b, f: metric(f)


class ProtocolMetric:
    __slots__ = ("function", "higher_is_better", "description")

    def __init__(self, function, description: str):
        self.function, self.higher_is_better, self.description = function, True, description


CDDFUSE_METRICS: "OrderedDict[str, ProtocolMetric]" = OrderedDict(
    [
        ("EN", ProtocolMetric(_fused_only(entropy), "Entropy of the fused image (bits), CDDFuse protocol")),
        ("SD", ProtocolMetric(_fused_only(standard_deviation), "Standard deviation (0-255), CDDFuse protocol")),
        ("SF", ProtocolMetric(_fused_only(spatial_frequency), "Spatial frequency (0-255), CDDFuse protocol")),
        ("MI", ProtocolMetric(mutual_information, "MI(F,A) + MI(F,B) in nats, CDDFuse protocol")),
        ("SCD", ProtocolMetric(scd, "Sum of the correlations of differences, CDDFuse protocol")),
        ("VIF", ProtocolMetric(vif, "VIFP(A,F) + VIFP(B,F), CDDFuse protocol")),
        ("Qabf", ProtocolMetric(qabf, "Edge preservation Q^{AB/F}, CDDFuse protocol")),
        ("SSIM", ProtocolMetric(ssim, "SSIM(F,A) + SSIM(F,B), skimage defaults, CDDFuse protocol")),
    ]
)
MIN_SIZE = 41  # the VIF's four scales need at least one valid window each


def score(a, b, fused, names: Iterable[str] = tuple(CDDFUSE_METRICS)) -> Dict[str, float]:
    """The named CDDFuse-protocol metrics of ``fused`` against sources ``a``, ``b``: three same-shaped 2D
    arrays of 0-255 grey levels (see :func:`cddfuse_grey`)."""
    names = list(names)
    unknown = [n for n in names if n not in CDDFUSE_METRICS]
    if unknown:
        raise InputError(f"Unknown CDDFuse-protocol metric(s) {', '.join(map(repr, unknown))}; "
                         f"choose from: {', '.join(CDDFUSE_METRICS)}.")
    images = [np.asarray(x, dtype=np.float64) for x in (a, b, fused)]
    if any(x.ndim != 2 for x in images) or len({x.shape for x in images}) != 1:
        raise InputError(f"The CDDFuse protocol takes three same-shaped 2D grey images; got "
                         f"{[x.shape for x in images]}.")
    if min(images[0].shape) < MIN_SIZE:
        raise InputError(f"The CDDFuse protocol needs images of at least {MIN_SIZE}x{MIN_SIZE} pixels; "
                         f"got {images[0].shape}.")
    if any(x.min() < 0 or x.max() > 255 for x in images):
        raise InputError("The CDDFuse protocol takes 0-255 grey levels; an image is outside that range.")
    with np.errstate(invalid="ignore", divide="ignore"):
        return {name: float(CDDFUSE_METRICS[name].function(*images)) for name in names}
