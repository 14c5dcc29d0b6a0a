"""Information-theoretic fusion metrics: EN, MI, NMI and FMI.

All of them are in bits (log base 2). EN, MI and NMI quantise the 0-255 grey levels to 256 integer
levels (round half up, as MATLAB's uint8 conversion does). FMI, on local feature windows, is in :mod:`.fmi`.
"""
from __future__ import annotations

import numpy as np

from ._common import Prepared, prepare

LEVELS = 256


def _levels(img255: np.ndarray) -> np.ndarray:
    """Integer grey levels 0..255 of a 0-255 float image (round half up)."""
    return np.floor(img255 + 0.5).astype(np.intp)


def _entropy_of(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-np.sum(p * np.log2(p)))


def _histogram(levels: np.ndarray) -> np.ndarray:
    return np.bincount(levels.ravel(), minlength=LEVELS) / levels.size


def _levels_and_entropy(img: Prepared):
    """(grey levels 0..255, entropy of their histogram) of an image, computed once."""
    def compute():
        levels = _levels(img.values)
        return levels, _entropy_of(_histogram(levels))

    return img.memo("levels", compute)


def _mutual_information_and_entropies(x: Prepared, y: Prepared):
    """(MI(x, y), H(x), H(y)) in bits from the 256x256 joint histogram (computed once per pair)."""
    def compute():
        (lx, hx), (ly, hy) = _levels_and_entropy(x), _levels_and_entropy(y)
        joint = np.bincount((lx * LEVELS + ly).ravel(), minlength=LEVELS * LEVELS) / lx.size
        return hx + hy - _entropy_of(joint), hx, hy

    return y.memo(("mi", x), compute)


def entropy(img, data_range=None) -> float:
    """EN, Shannon entropy of the grey-level histogram, in bits. Higher is better.

    EN = -sum_l p_l log2 p_l over the 256 levels of the image quantised to 0..255
    (Roberts, van Aardt & Ahmed 2008, "Assessment of image fusion procedures using entropy, image quality,
    and multispectral classification"). Range [0, 8].
    """
    (x,) = prepare(img, data_range=data_range)
    return entropy_prepared(Prepared(x))


def entropy_prepared(f: Prepared) -> float:
    return _levels_and_entropy(f)[1]


def mutual_information(a, b, fused, data_range=None) -> float:
    """MI, fusion mutual information in bits: MI(A, F) + MI(B, F). Higher is better.

    MI(X, F) = H(X) + H(F) - H(X, F), from the 256x256 joint histogram of the 0..255 levels
    (Qu, Zhang & Yan 2002, "Information measure for performance of image fusion").
    Convention: log base 2 (bits) and the sum over both sources; some published tables use nats
    (multiply by ln 2 = 0.693) or halve the sum. Range [0, 16].
    """
    return mutual_information_prepared(*map(Prepared, prepare(a, b, fused, data_range=data_range)))


def mutual_information_prepared(x: Prepared, y: Prepared, f: Prepared) -> float:
    return _mutual_information_and_entropies(x, f)[0] + _mutual_information_and_entropies(y, f)[0]


def normalized_mutual_information(a, b, fused, data_range=None) -> float:
    """NMI, Hossny et al.'s normalised fusion MI. Higher is better.

    Q_MI = 2 [ MI(A, F) / (H(A) + H(F)) + MI(B, F) / (H(B) + H(F)) ]
    (Hossny, Nahavandi & Creighton 2008, "Comments on 'Information measure for performance of image
    fusion'"). Range [0, 2]; a term whose two images are both constant (0/0) counts as 0.
    """
    return normalized_mutual_information_prepared(*map(Prepared, prepare(a, b, fused, data_range=data_range)))


def normalized_mutual_information_prepared(x: Prepared, y: Prepared, f: Prepared) -> float:
    total = 0.0
    for source in (x, y):
        mi, hs, hf = _mutual_information_and_entropies(source, f)
        if hs + hf > 0:
            total += mi / (hs + hf)
    return 2.0 * total
