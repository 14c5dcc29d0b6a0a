"""FMI, Haghighat's feature mutual information (Fast-FMI), evaluated in O(window) work per window.

The reference algorithm (fmi.m, and this package before issue 19) builds, in every w x w window, the
w^2 x w^2 joint pdf phi * FrechetBound + (1 - phi) * product and sums -p log2 p over its w^4 cells. Two
facts make that unnecessary, with the same numbers up to floating-point rounding:

* The Frechet bound (comonotone min(F, G), or countermonotone max(F + G - 1, 0)) puts mass only on the
  cells where the intervals [F(i-1), F(i)] and [G(j-1), G(j)] (reversed for the lower bound) overlap: a
  staircase of at most 2 w^2 - 1 cells, found by merging the two sorted CDFs. Its mass on a cell is the
  overlap length, and sum_ij H(i, j), needed for the bound's covariance, is an integral over the merge.
* Off the staircase the joint cell is (1 - phi) q_i p_j, whose entropy sums in closed form:
  (1 - phi) (H(q) + H(p) - log2|1 - phi|). Only the staircase cells need a logarithm each.

Window statistics of a source (pdf, cdf, entropy, ...) do not depend on the fused image, so
:class:`WindowFeatures` of the sources can be computed once and reused for every fused image.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ._common import Prepared, prepare

_CHUNK = 1024  # windows per batch of the pair step: keeps its (2 w^2, n) temporaries in cache (measured best of 256..4096)
_BLOCK = 8192  # windows per block of the window statistics (measured best of 2048..65536 on 256x256)


def feature_image(img255: np.ndarray, feature: str) -> np.ndarray:
    if feature == "none":
        return img255
    if feature == "gradient":
        # MATLAB's gradient(im) returns the x (column) derivative first, and fmi.m keeps only that one:
        # central differences inside, one-sided at the borders -- exactly np.gradient along axis 1.
        return np.gradient(img255, axis=1)
    raise InputError(f"Unknown FMI feature '{feature}'; choose 'none' (raw pixels) or 'gradient'.")


class WindowFeatures:
    """Per-window marginal pdf, cdf, pdf deviations, index standard deviation and entropy of one feature image.

    Arrays are (w^2, windows): one long vector per position in the window, so that every per-window
    sum is w^2 - 1 vector additions (numpy is slow at reducing many short rows). They are computed in
    blocks of image rows, so that the temporaries stay small (freshly mapped large temporaries cost
    more in page faults than the arithmetic).
    """

    def __init__(self, img255: np.ndarray, feature: str, window: int):
        feat = feature_image(np.asarray(img255, dtype=np.float64), feature)
        self.feature_image, self.window = feat, window
        h, w = feat.shape[0] - window + 1, feat.shape[1] - window + 1
        m = window * window
        self.pdf, self.cdf, self.dev = np.empty((m, h * w)), np.empty((m, h * w)), np.empty((m, h * w))
        self.dev_sq, self.sd, self.entropy = np.empty(h * w), np.empty(h * w), np.empty(h * w)
        self.flat = np.empty(h * w, dtype=bool)
        step = max(1, _BLOCK // w)
        for top in range(0, h, step):
            bottom = min(h, top + step)
            self._block(feat[top : bottom + window - 1], slice(top * w, bottom * w))

    def _block(self, feat: np.ndarray, out: slice) -> None:
        window = self.window
        h, w = feat.shape[0] - window + 1, feat.shape[1] - window + 1
        # Position k = column * window + row: MATLAB's column-major sub(:) (the CDF order matters).
        rows = np.stack([feat[r : r + h, c : c + w].ravel() for c in range(window) for r in range(window)])
        lo = rows.min(axis=0)
        span = rows.max(axis=0) - lo
        flat = span == 0
        # Min-max normalise each window (a constant one becomes all ones), then divide by its sum.
        rows -= lo
        rows /= np.where(flat, 1.0, span)
        rows[:, flat] = 1.0
        rows /= column_sum(rows)
        pdf = rows
        cdf = self.cdf[:, out]
        cdf[0] = pdf[0]
        for k in range(1, window * window):
            np.add(cdf[k - 1], pdf[k], out=cdf[k])
        dev = self.dev[:, out]
        np.subtract(pdf, column_sum(pdf) / (window * window), out=dev)
        self.pdf[:, out] = pdf
        self.dev_sq[out] = np.einsum("kn,kn->n", dev, dev)
        idx = np.arange(1, window * window + 1, dtype=np.float64)
        moment1, moment2 = np.einsum("kn,k->n", pdf, idx), np.einsum("kn,k->n", pdf, idx**2)
        self.sd[out] = np.sqrt(np.maximum(moment2 - moment1**2, 0.0))
        self.entropy[out] = -np.einsum("kn,kn->n", pdf, np.log2(np.fmax(pdf, np.finfo(np.float64).tiny)))
        self.flat[out] = flat


def column_sum(a: np.ndarray) -> np.ndarray:
    """Sum over the first axis of a (k, n) array, row by row (fast for a short first axis)."""
    return a.sum(axis=0)


def _log2_or_zero(p: np.ndarray) -> np.ndarray:
    """log2|p|, finite everywhere: p = 0 gets log2 of the smallest normal double, so p * log2 = 0 exactly."""
    return np.log2(np.fmax(np.abs(p), np.finfo(np.float64).tiny))


def column_entropy(p: np.ndarray) -> np.ndarray:
    """-sum p log2 p over the first axis; MATLAB's real(-p log2 p) = -p log2|p| for a negative cell."""
    return -column_sum(p * _log2_or_zero(p))


def _differing_windows(src: WindowFeatures, fus: WindowFeatures) -> np.ndarray:
    """True for each window where the two feature patches are not identical."""
    differs = src.feature_image != fus.feature_image
    w = src.window
    h, width = differs.shape[0] - w + 1, differs.shape[1] - w + 1
    out = differs[:h, :width].copy()
    for r in range(w):
        for c in range(w):
            out |= differs[r : r + h, c : c + width]
    return out.ravel()


def _staircase_nfmi(p, q, src_cdf, fus_cdf, h_src, h_fus, sd_src, sd_fus, c, lower: bool) -> np.ndarray:
    """nfmi of windows with non-degenerate pdfs (columns of the (w^2, n) arrays p, q, ...), via the
    Frechet bound's staircase (see the module docstring); ``lower``: the pdf correlations c are negative,
    so the bound is the countermonotone (lower) one."""
    m, n = p.shape
    # Breakpoints along the probability axis: the fused CDF, and the source's cell edges (for the lower
    # bound, the source cells reversed: cell j spans [1 - G(j), 1 - G(j-1)], so take 1 - G(m-1..0)).
    if lower:
        src_edges = np.empty_like(src_cdf)
        np.subtract(1.0, src_cdf[m - 2 :: -1], out=src_edges[: m - 1])
        src_edges[m - 1] = 1.0
        np.maximum(src_edges, 0.0, out=src_edges)
    else:
        src_edges = src_cdf
    # Merge by sorting the bit patterns (non-negative doubles sort like their int64 bits) with the
    # lowest mantissa bit replaced by the origin (0 fused, 1 source): a change of at most 1 ulp per edge.
    keys = np.empty((n, 2 * m), dtype=np.int64)
    keys[:, :m] = fus_cdf.T.view(np.int64) & ~np.int64(1)
    keys[:, m:] = src_edges.T.view(np.int64) | np.int64(1)
    keys.sort(axis=1)
    keys = keys.T.copy()
    from_src = keys & 1
    keys ^= from_src
    edges = keys.view(np.float64)
    length = np.empty_like(edges)  # interval k runs from edge k-1 (0 for k = 0) to edge k
    length[0] = edges[0]
    np.subtract(edges[1:], edges[:-1], out=length[1:])
    src_before = np.zeros((2 * m, n), dtype=np.int64)  # source edges passed before interval k
    np.cumsum(from_src[:-1], axis=0, out=src_before[1:])
    fus_before = np.arange(2 * m)[:, None] - src_before
    valid = (src_before < m) & (fus_before < m)
    length *= valid

    # Hoeffding: cov of the bound = sum_ij H(i, j) - sum F sum G, with sum_ij H = integral over u of
    # #{i: F(i) > u} * #{j: G(j) > u} (upper bound), or #{i: F(i) > u} * #{j: 1 - G(j) < u} (lower bound).
    src_count = np.minimum(src_before, m - 1) + 1 if lower else m - src_before
    src_count *= m - fus_before
    cov_bound = column_sum(length * src_count) - column_sum(fus_cdf) * column_sum(src_cdf)
    corr_bound = cov_bound / (sd_src * sd_fus)
    weight = np.where(corr_bound == 0, 0.0, c / np.where(corr_bound == 0, 1.0, corr_bound))

    # Entropy of the joint pdf: the product part in closed form, then each staircase cell corrected.
    rest = 1.0 - weight
    sum_p, sum_q = column_sum(p), column_sum(q)
    h_joint = rest * (h_fus * sum_p + h_src * sum_q - _log2_or_zero(rest) * sum_p * sum_q)
    columns = np.arange(n)
    # Flat indices of each interval's cells in the (w^2, n) pdf arrays: cell * n + column.
    fus_index = np.minimum(fus_before, m - 1, out=fus_before)
    fus_index *= n
    fus_index += columns
    if lower:
        src_index = np.subtract(m - 1, src_before, out=src_before)
        np.maximum(src_index, 0, out=src_index)
    else:
        src_index = np.minimum(src_before, m - 1, out=src_before)
    src_index *= n
    src_index += columns
    product = q.ravel().take(fus_index)
    product *= p.ravel().take(src_index)
    product *= rest * valid
    joint = product + weight * length
    h_joint += column_entropy(joint) - column_entropy(product)

    mi = h_src + h_fus - h_joint
    total = h_src + h_fus
    return np.where((mi == 0) | (total == 0) | (corr_bound == 0), 0.0, 2.0 * mi / np.where(total == 0, 1.0, total))


def per_window_nfmi(src: WindowFeatures, fus: WindowFeatures) -> np.ndarray:
    """nfmi of every window: 1 where the feature patches are identical (fmi.m's shortcut), 0 where either
    pdf is degenerate (flat patch, a point mass, or uncorrelated pdfs: the joint pdf is then the product,
    MI = 0), otherwise the Fast-FMI value."""
    num = np.empty_like(src.dev_sq)
    for start in range(0, len(num), _CHUNK):  # in blocks: small temporaries
        block = slice(start, start + _CHUNK)
        num[block] = column_sum(src.dev[:, block] * fus.dev[:, block])
    den = np.sqrt(src.dev_sq * fus.dev_sq)
    c = num / np.where(den == 0, 1.0, den)  # Pearson correlation of the two pdfs (0 where num is 0)
    differs = _differing_windows(src, fus)
    out = (~differs).astype(np.float64)
    computed = differs & ~src.flat & ~fus.flat & (src.sd > 0) & (fus.sd > 0) & (num != 0)
    for lower in (False, True):
        todo = np.flatnonzero(computed & ((c < 0) == lower))
        for start in range(0, len(todo), _CHUNK):
            part = todo[start : start + _CHUNK]
            columns = [np.take(array, part, axis=1) for array in (src.pdf, fus.pdf, src.cdf, fus.cdf)]
            out[part] = _staircase_nfmi(*columns, src.entropy[part], fus.entropy[part], src.sd[part], fus.sd[part],
                                        c[part], lower)
    return out


def feature_mutual_information(a, b, fused, feature: str = "none", window: int = 3, data_range=None) -> float:
    """FMI, Haghighat et al.'s feature mutual information, Fast-FMI variant. Higher is better.

    Features are extracted from A, B and F ('none': raw pixels; 'gradient': the horizontal derivative
    MATLAB's gradient() returns first). In every ``window`` x ``window`` window (stride 1, no padding)
    each feature patch is min-max normalised and divided by its sum to give a marginal pdf over the
    window's pixels (column-major order); the joint pdf is Nelsen's mixture
    phi * FrechetBound + (1 - phi) * product, with phi = corr(pdfs) / corr(bound);
    nfmi = 2 MI / (H_X + H_F) per window (1 where the two feature patches are identical), and
    FMI = mean over windows of (nfmi(A, F) + nfmi(B, F)) / 2.
    References: Haghighat, Aghagolzadeh & Seyedarabi 2011, "A non-reference image fusion metric based on
    mutual information of image features" (Comput. Electr. Eng. 37(5)); Haghighat & Razian 2014,
    "Fast-FMI: non-reference image fusion metric" -- this follows the structure of their public fmi.m.
    Range [0, 1] in practice; invariant to a positive affine change of any image's intensities.
    As in fmi.m, a flat patch (uniform pdf) facing a different patch gets pdf correlation 0, hence the
    independence joint pdf and a window score of 0: flat backgrounds count only where A (or B) and F
    are exactly equal.
    """
    if window < 2 or window % 2 == 0:
        raise InputError(f"The FMI window must be an odd size of at least 3; got {window}.")
    if feature not in ("none", "gradient"):
        feature_image(np.zeros((1, 1)), feature)  # raises the unknown-feature error before any work
    x, y, f = map(Prepared, prepare(a, b, fused, data_range=data_range, min_size=window))
    return fmi_prepared(x, y, f, feature, window)


def fmi_prepared(x: Prepared, y: Prepared, f: Prepared, feature: str = "none", window: int = 3) -> float:
    """:func:`feature_mutual_information` of prepared images (each image's window pdfs computed once)."""
    fx, fy, ff = (img.memo(("fmi", feature, window), lambda img=img: WindowFeatures(img.values, feature, window))
                  for img in (x, y, f))
    return float(np.mean(0.5 * (per_window_nfmi(fx, ff) + per_window_nfmi(fy, ff))))


def fmi_pixel(a, b, fused, data_range=None) -> float:
    """FMI_pixel: :func:`feature_mutual_information` on raw pixels with a 3x3 window (fmi.m 'none', w=3).

    This is the quantity the fusion literature (and the MFEnet paper's table) reports as FMI_pixel.
    Higher is better, range [0, 1].
    """
    return feature_mutual_information(a, b, fused, feature="none", window=3, data_range=data_range)


def fmi_gradient(a, b, fused, data_range=None) -> float:
    """FMI_gradient: :func:`feature_mutual_information` on horizontal-gradient features, 3x3 window.

    fmi.m with feature 'gradient' and w=3 (its feature is MATLAB gradient()'s x component only).
    Higher is better, range [0, 1].
    """
    return feature_mutual_information(a, b, fused, feature="gradient", window=3, data_range=data_range)
