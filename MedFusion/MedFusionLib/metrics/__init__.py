"""Objective fusion metrics (numpy + OpenCV only; no torch).

Every metric takes 2D arrays and a ``data_range`` keyword (the value meaning full white: default 255
for uint8 arrays and 1.0 for floats; see :mod:`._common`). Metrics that the literature reports on 8-bit
grey levels (EN, SD, SF, AG, EI, MI, PSNR, VIFF, ...) convert to the 0-255 scale internally, so a
[0, 1] float image and its uint8 version give the same value.

``METRICS`` maps each name to ``MetricSpec(function, higher_is_better, description)``; every registry
function has the uniform signature ``fn(a, b, fused, data_range=None) -> float`` (single-image metrics
look at ``fused`` only). :func:`evaluate_all` runs them on one (a, b, fused) triple of [0, 1] images;
:class:`SourcePair` scores many fused images against the same sources, computing the sources' share once
(:mod:`.scoring`; same code, same numbers).

Name          Convention (one line each; details in each function's docstring)
EN            entropy of the 256-level histogram of F, bits, [0, 8]
SD            population std of F, 0-255 scale
SF            sqrt(RF^2 + CF^2), neighbour differences of F, 0-255 scale
AG            mean sqrt((dx^2 + dy^2) / 2), forward differences, 0-255 scale
EI            mean Sobel magnitude of F (replicated border), 0-255 scale
MI            MI(A,F) + MI(B,F), 256x256 joint histograms, bits
NMI           Hossny 2008: 2[MI(A,F)/(H(A)+H(F)) + MI(B,F)/(H(B)+H(F))], [0, 2]
FMI_pixel     Haghighat Fast-FMI on raw pixels, 3x3 windows, [0, 1]
FMI_gradient  Haghighat Fast-FMI on horizontal-gradient features, 3x3 windows, [0, 1]
SCD           r(F-B, A) + r(F-A, B), [-2, 2]
SSIM          SSIM(A,F) + SSIM(B,F), Gaussian 11x11 sigma 1.5, K = 0.01/0.03, L = full scale, [-2, 2]
SSIM_mean     (SSIM(A,F) + SSIM(B,F)) / 2
Q_ABF         Xydeas-Petrovic Q^{AB/F}, standard constants, Sobel, [0, 1] (max ~0.975)
VIFF          Han 2013 VIF for fusion, 4 scales, as VIFF_Public.m
PSNR          10 log10(255^2 / ((MSE(A,F) + MSE(B,F)) / 2)), dB
Q_Y           Yang 2008, 7x7 Gaussian SSIM maps with the 0.75 redundancy switch
CC            (r(A,F) + r(B,F)) / 2
"""
from __future__ import annotations

from collections import OrderedDict
from functools import wraps
from typing import Callable, Dict, Iterable, NamedTuple, Optional

from ..errors import InputError
from ._common import RANGE_TOLERANCE, prepare, to_gray255
from .gradient import average_gradient, edge_intensity, qabf, spatial_frequency
from .fmi import feature_mutual_information, fmi_gradient, fmi_pixel
from .information import entropy, mutual_information, normalized_mutual_information
from .intensity import correlation_coefficient, psnr, scd, standard_deviation
from .scoring import PREPARED_METRICS, SourcePair
from .structural import q_y, ssim, ssim_mean, ssim_sum, viff


class MetricSpec(NamedTuple):
    function: Callable[..., float]  # fn(a, b, fused, data_range=None) -> float
    higher_is_better: bool
    description: str


def _on_fused(metric):
    """Adapt a single-image metric to the registry's (a, b, fused) signature."""

    @wraps(metric)
    def on_fused(a, b, fused, data_range=None):
        return metric(fused, data_range=data_range)

    return on_fused


METRICS: "OrderedDict[str, MetricSpec]" = OrderedDict(
    [
        ("EN", MetricSpec(_on_fused(entropy), True, "Entropy of the fused image (bits)")),
        ("SD", MetricSpec(_on_fused(standard_deviation), True, "Standard deviation of the fused image (0-255)")),
        ("SF", MetricSpec(_on_fused(spatial_frequency), True, "Spatial frequency of the fused image (0-255)")),
        ("AG", MetricSpec(_on_fused(average_gradient), True, "Average gradient of the fused image (0-255)")),
        ("EI", MetricSpec(_on_fused(edge_intensity), True, "Edge intensity: mean Sobel magnitude (0-255)")),
        ("MI", MetricSpec(mutual_information, True, "Mutual information MI(A,F) + MI(B,F) (bits)")),
        ("NMI", MetricSpec(normalized_mutual_information, True, "Normalised mutual information (Hossny 2008)")),
        ("FMI_pixel", MetricSpec(fmi_pixel, True, "Feature mutual information on pixels, 3x3 windows")),
        ("FMI_gradient", MetricSpec(fmi_gradient, True, "Feature mutual information on gradients, 3x3 windows")),
        ("SCD", MetricSpec(scd, True, "Sum of the correlations of differences")),
        ("SSIM", MetricSpec(ssim_sum, True, "SSIM(A,F) + SSIM(B,F)")),
        ("SSIM_mean", MetricSpec(ssim_mean, True, "(SSIM(A,F) + SSIM(B,F)) / 2")),
        ("Q_ABF", MetricSpec(qabf, True, "Edge preservation Q^{AB/F} (Xydeas & Petrovic 2000)")),
        ("VIFF", MetricSpec(viff, True, "Visual information fidelity for fusion (Han et al. 2013)")),
        ("PSNR", MetricSpec(psnr, True, "PSNR against both sources (dB, averaged MSE)")),
        ("Q_Y", MetricSpec(q_y, True, "Yang's SSIM-based fusion metric")),
        ("CC", MetricSpec(correlation_coefficient, True, "Mean correlation coefficient with the sources")),
    ]
)


def evaluate_all(a, b, fused, names: Optional[Iterable[str]] = None) -> Dict[str, float]:
    """Compute the named metrics (default: all of ``METRICS``, in order) on one (a, b, fused) triple.

    ``a``, ``b`` (sources) and ``fused`` are same-shaped 2D float arrays in [0, 1]; metrics defined on
    0-255 grey levels convert internally. Returns {name: float}.
    """
    selected = list(METRICS) if names is None else list(names)
    unknown = [n for n in selected if n not in METRICS]
    if unknown:
        raise InputError(f"Unknown metric(s) {', '.join(map(repr, unknown))}; choose from: {', '.join(METRICS)}.")
    # Validate once up front so a bad input fails with one clear message, before any work is done.
    prepare(a, b, fused, data_range=1.0)
    return SourcePair(a, b).score(fused, selected)


__all__ = [
    "METRICS",
    "MetricSpec",
    "PREPARED_METRICS",
    "RANGE_TOLERANCE",
    "SourcePair",
    "average_gradient",
    "correlation_coefficient",
    "edge_intensity",
    "entropy",
    "evaluate_all",
    "feature_mutual_information",
    "fmi_gradient",
    "fmi_pixel",
    "mutual_information",
    "normalized_mutual_information",
    "psnr",
    "q_y",
    "qabf",
    "scd",
    "spatial_frequency",
    "ssim",
    "ssim_mean",
    "ssim_sum",
    "standard_deviation",
    "to_gray255",
    "viff",
]
