"""Intensity-statistics fusion metrics: SD, PSNR, CC and SCD."""
from __future__ import annotations

import numpy as np

from ._common import Prepared, pearson, prepare


def standard_deviation(img, data_range=None) -> float:
    """SD, contrast of the fused image on the 0-255 scale. Higher is better.

    SD = sqrt( 1/(MN) sum_ij (F_ij - mean(F))^2 )  (population form, ddof = 0). Range [0, 127.5].
    Divide by 255 for the value on [0, 1] data.
    """
    return standard_deviation_prepared(Prepared(prepare(img, data_range=data_range)[0]))


def standard_deviation_prepared(f: Prepared) -> float:
    return float(np.std(f.values))


def psnr(a, b, fused, data_range=None) -> float:
    """PSNR for fusion, in dB, on the 0-255 scale with a fixed peak of 255. Higher is better.

    PSNR = 10 log10( 255^2 / ((MSE(A, F) + MSE(B, F)) / 2) ),  MSE(X, F) = mean((X - F)^2).
    Convention: the fusion literature's averaged-MSE form (e.g. Ma et al.'s FusionGAN / CDDFuse
    evaluators) but with the nominal peak 255 rather than max(F), so the value does not depend on how
    bright the fused image happens to be. Identical to 10 log10(1 / mean MSE) on [0, 1] data.
    Returns +inf when both MSEs are 0 (only possible if A == B == F).
    """
    return psnr_prepared(*map(Prepared, prepare(a, b, fused, data_range=data_range)))


def psnr_prepared(x: Prepared, y: Prepared, f: Prepared) -> float:
    x, y, f = x.values, y.values, f.values
    mse = 0.5 * (np.mean((x - f) ** 2) + np.mean((y - f) ** 2))
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(255.0**2 / mse))


def correlation_coefficient(a, b, fused, data_range=None) -> float:
    """CC, mean Pearson correlation between each source and the fused image. Higher is better.

    CC = (r(A, F) + r(B, F)) / 2, r = Pearson correlation over all pixels. Range [-1, 1];
    a term involving a constant image (undefined correlation) counts as 0. Scale invariant.
    """
    return correlation_coefficient_prepared(*map(Prepared, prepare(a, b, fused, data_range=data_range)))


def correlation_coefficient_prepared(x: Prepared, y: Prepared, f: Prepared) -> float:
    return 0.5 * (pearson(x.values, f.values) + pearson(y.values, f.values))


def scd(a, b, fused, data_range=None) -> float:
    """SCD, the sum of the correlations of differences. Higher is better.

    SCD = r(F - B, A) + r(F - A, B), r = Pearson correlation over all pixels
    (Aslantas & Bendes 2015, "A new image quality metric for image fusion: the sum of the correlations
    of differences", AEU 69(12)). F - B is the information F carries that B does not, so it should
    correlate with A. Range [-2, 2]; a term with a constant image counts as 0. Scale invariant.
    """
    return scd_prepared(*map(Prepared, prepare(a, b, fused, data_range=data_range)))


def scd_prepared(x: Prepared, y: Prepared, f: Prepared) -> float:
    x, y, f = x.values, y.values, f.values
    return pearson(f - y, x) + pearson(f - x, y)
