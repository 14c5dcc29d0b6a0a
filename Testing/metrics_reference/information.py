"""Information-theoretic fusion metrics: EN, MI, NMI and FMI.

All of them are in bits (log base 2). EN, MI and NMI quantise the 0-255 grey levels to 256 integer
levels (round half up, as MATLAB's uint8 conversion does); FMI works on local feature windows.
"""
from __future__ import annotations

import numpy as np

from MedFusionLib.errors import InputError
from ._common import prepare

LEVELS = 256


def _levels(img255: np.ndarray) -> np.ndarray:
    """Integer grey levels 0..255 of a 0-255 float image (round half up)."""
    return np.floor(img255 + 0.5).astype(np.intp)


def _entropy_of(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-np.sum(p * np.log2(p)))


def _histogram(levels: np.ndarray) -> np.ndarray:
    return np.bincount(levels.ravel(), minlength=LEVELS) / levels.size


def _mutual_information_and_entropies(x255: np.ndarray, y255: np.ndarray):
    """(MI(x, y), H(x), H(y)) in bits from the 256x256 joint histogram."""
    lx, ly = _levels(x255), _levels(y255)
    joint = np.bincount((lx * LEVELS + ly).ravel(), minlength=LEVELS * LEVELS) / lx.size
    hx, hy = _entropy_of(_histogram(lx)), _entropy_of(_histogram(ly))
    return hx + hy - _entropy_of(joint), hx, hy


def entropy(img, data_range=None) -> float:
    """EN, Shannon entropy of the grey-level histogram, in bits. Higher is better.

    EN = -sum_l p_l log2 p_l over the 256 levels of the image quantised to 0..255
    (Roberts, van Aardt & Ahmed 2008, "Assessment of image fusion procedures using entropy, image quality,
    and multispectral classification"). Range [0, 8].
    """
    (x,) = prepare(img, data_range=data_range)
    return _entropy_of(_histogram(_levels(x)))


def mutual_information(a, b, fused, data_range=None) -> float:
    """MI, fusion mutual information in bits: MI(A, F) + MI(B, F). Higher is better.

    MI(X, F) = H(X) + H(F) - H(X, F), from the 256x256 joint histogram of the 0..255 levels
    (Qu, Zhang & Yan 2002, "Information measure for performance of image fusion").
    Convention: log base 2 (bits) and the sum over both sources; some published tables use nats
    (multiply by ln 2 = 0.693) or halve the sum. Range [0, 16].
    """
    x, y, f = prepare(a, b, fused, data_range=data_range)
    return _mutual_information_and_entropies(x, f)[0] + _mutual_information_and_entropies(y, f)[0]


def normalized_mutual_information(a, b, fused, data_range=None) -> float:
    """NMI, Hossny et al.'s normalised fusion MI. Higher is better.

    Q_MI = 2 [ MI(A, F) / (H(A) + H(F)) + MI(B, F) / (H(B) + H(F)) ]
    (Hossny, Nahavandi & Creighton 2008, "Comments on 'Information measure for performance of image
    fusion'"). Range [0, 2]; a term whose two images are both constant (0/0) counts as 0.
    """
    x, y, f = prepare(a, b, fused, data_range=data_range)
    total = 0.0
    for source in (x, y):
        mi, hs, hf = _mutual_information_and_entropies(source, f)
        if hs + hf > 0:
            total += mi / (hs + hf)
    return 2.0 * total


# ----------------------------------------------------------------------------------------------- FMI
_FMI_CHUNK = 1024  # windows per vectorised batch: keeps the (chunk, 9, 9) arrays cache-sized


def _feature(img255: np.ndarray, feature: str) -> np.ndarray:
    if feature == "none":
        return img255
    if feature == "gradient":
        # MATLAB's gradient(im) returns the x (column) derivative first, and fmi.m keeps only that one:
        # central differences inside, one-sided at the borders -- exactly np.gradient along axis 1.
        return np.gradient(img255, axis=1)
    raise InputError(f"Unknown FMI feature '{feature}'; choose 'none' (raw pixels) or 'gradient'.")


def _window_rows(feat: np.ndarray, w: int) -> np.ndarray:
    """Every w x w window as a row, flattened column-major like MATLAB's sub(:) (the CDF order matters)."""
    view = np.lib.stride_tricks.sliding_window_view(feat, (w, w))
    return view.transpose(0, 1, 3, 2).reshape(-1, w * w)


class _WindowStats:
    """Per-window marginal pdf, cdf, pdf deviations and index standard deviation of one feature image."""

    def __init__(self, rows: np.ndarray):
        lo = rows.min(axis=1, keepdims=True)
        span = rows.max(axis=1, keepdims=True) - lo
        flat = span == 0
        # Min-max normalise each window (a constant one becomes all ones), then divide by its sum.
        norm = np.where(flat, 1.0, (rows - lo) / np.where(flat, 1.0, span))
        self.pdf = norm / norm.sum(axis=1, keepdims=True)
        self.cdf = np.cumsum(self.pdf, axis=1)
        self.dev = self.pdf - self.pdf.mean(axis=1, keepdims=True)
        self.dev_sq = np.einsum("ij,ij->i", self.dev, self.dev)
        idx = np.arange(1, rows.shape[1] + 1, dtype=np.float64)
        self.sd = np.sqrt(np.maximum(self.pdf @ idx**2 - (self.pdf @ idx) ** 2, 0.0))
        self.entropy = _row_entropy(self.pdf)


def _row_entropy(p: np.ndarray) -> np.ndarray:
    """-sum p log2 p along the last axis; MATLAB's real(-p log2 p) = -p log2|p| for a negative cell."""
    logs = np.zeros_like(p)
    np.log2(np.abs(p), out=logs, where=p != 0)
    return -np.einsum("...i,...i->...", p, logs)


def _window_fmi(src: _WindowStats, fus: _WindowStats) -> np.ndarray:
    """Normalised MI of each window pair, Fast-FMI: joint pdf from Nelsen's Frechet-bound mixture."""
    num = np.einsum("ij,ij->i", src.dev, fus.dev)
    den = np.sqrt(src.dev_sq * fus.dev_sq)
    c = np.where(num == 0, 0.0, num / np.where(den == 0, 1.0, den))  # Pearson correlation of the two pdfs

    fi, sj = fus.cdf[:, :, None], src.cdf[:, None, :]  # row index i: fused CDF, column index j: source CDF
    # Frechet upper (comonotone) bound min(F, G) when c >= 0, lower bound max(F + G - 1, 0) otherwise.
    bound_cdf = np.minimum(fi, sj)
    negative = c < 0
    if negative.any():
        bound_cdf[negative] = np.maximum(fi[negative] + sj[negative] - 1.0, 0.0)
    # Hoeffding: cov = sum_ij (H(i, j) - F(i) G(j)) on the integer lattice of window positions.
    cov_bound = bound_cdf.sum(axis=(1, 2)) - fus.cdf.sum(axis=1) * src.cdf.sum(axis=1)
    degenerate = (src.sd == 0) | (fus.sd == 0) | (c == 0)
    corr_bound = cov_bound / np.where(degenerate, 1.0, src.sd * fus.sd)
    degenerate |= corr_bound == 0
    weight = np.where(degenerate, 0.0, c / np.where(degenerate, 1.0, corr_bound))[:, None, None]

    # Cell masses of the bound: its CDF differenced along both axes (0 before the first cell), in place.
    bound_pdf = bound_cdf
    bound_pdf[:, 1:, :] -= bound_pdf[:, :-1, :]
    bound_pdf[:, :, 1:] -= bound_pdf[:, :, :-1]
    joint = fus.pdf[:, :, None] * src.pdf[:, None, :]
    joint *= 1.0 - weight
    bound_pdf *= weight
    joint += bound_pdf

    mi = src.entropy + fus.entropy - _row_entropy(joint.reshape(len(c), -1))
    total = src.entropy + fus.entropy
    return np.where((mi == 0) | (total == 0), 0.0, 2.0 * mi / np.where(total == 0, 1.0, total))


def _per_window_fmi(src_rows: np.ndarray, fus_rows: np.ndarray) -> np.ndarray:
    """nfmi of every window; identical feature patches score 1 (fmi.m's shortcut) and skip the work.

    Window statistics are computed chunk by chunk for the differing windows only (every statistic is
    per window, so this gives the same numbers as computing them for the whole image first).
    """
    out = np.ones(len(fus_rows))
    todo = np.flatnonzero(np.any(src_rows != fus_rows, axis=1))
    for start in range(0, len(todo), _FMI_CHUNK):
        part = todo[start : start + _FMI_CHUNK]
        out[part] = _window_fmi(_WindowStats(src_rows[part]), _WindowStats(fus_rows[part]))
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
    x, y, f = prepare(a, b, fused, data_range=data_range, min_size=window)
    ra, rb, rf = (_window_rows(_feature(img, feature), window) for img in (x, y, f))
    return float(np.mean(0.5 * (_per_window_fmi(ra, rf) + _per_window_fmi(rb, rf))))


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
