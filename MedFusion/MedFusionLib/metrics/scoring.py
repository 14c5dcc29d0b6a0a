"""Score many fused images against one pair of sources, sharing everything that depends on the sources.

    sources = SourcePair(a, b)            # [0, 1] float sources (or data_range=255 for 0-255 data)
    for fused in fused_images:            # e.g. one per fusion method
        scores = sources.score(fused, ["SSIM", "VIFF", "FMI_pixel"])

Each metric is computed from :class:`._common.Prepared` images, which cache their derivations (edges,
local moments, pyramids, FMI window pdfs, histograms): the sources' are computed on the first fused image
and reused for every later one, and metrics sharing a derivation of the fused image compute it once. The
numbers are those of the public metric functions (``METRICS[name].function``), which run the same code.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, NamedTuple

from ..errors import InputError
from ._common import Prepared, prepare, to_gray255
from .fmi import fmi_prepared
from .gradient import average_gradient_prepared, edge_intensity_prepared, qabf_prepared, spatial_frequency_prepared
from .information import entropy_prepared, mutual_information_prepared, normalized_mutual_information_prepared
from .intensity import correlation_coefficient_prepared, psnr_prepared, scd_prepared, standard_deviation_prepared
from .structural import (
    QY_WINDOW,
    SSIM_WINDOW,
    VIFF_MIN_SIZE,
    q_y_prepared,
    ssim_mean_prepared,
    ssim_sum_prepared,
    viff_prepared,
)


class PreparedMetric(NamedTuple):
    function: Callable[[Prepared, Prepared, Prepared], float]  # fn(a, b, fused) on Prepared images
    min_size: int  # smallest image side the metric accepts


def _fused_only(metric):
    return lambda a, b, f: metric(f)


PREPARED_METRICS: Dict[str, PreparedMetric] = {
    "EN": PreparedMetric(_fused_only(entropy_prepared), 1),
    "SD": PreparedMetric(_fused_only(standard_deviation_prepared), 1),
    "SF": PreparedMetric(_fused_only(spatial_frequency_prepared), 1),
    "AG": PreparedMetric(_fused_only(average_gradient_prepared), 2),
    "EI": PreparedMetric(_fused_only(edge_intensity_prepared), 1),
    "MI": PreparedMetric(mutual_information_prepared, 1),
    "NMI": PreparedMetric(normalized_mutual_information_prepared, 1),
    "FMI_pixel": PreparedMetric(lambda a, b, f: fmi_prepared(a, b, f, "none", 3), 3),
    "FMI_gradient": PreparedMetric(lambda a, b, f: fmi_prepared(a, b, f, "gradient", 3), 3),
    "SCD": PreparedMetric(scd_prepared, 1),
    "SSIM": PreparedMetric(ssim_sum_prepared, SSIM_WINDOW),
    "SSIM_mean": PreparedMetric(ssim_mean_prepared, SSIM_WINDOW),
    "Q_ABF": PreparedMetric(qabf_prepared, 1),
    "VIFF": PreparedMetric(viff_prepared, VIFF_MIN_SIZE),
    "PSNR": PreparedMetric(psnr_prepared, 1),
    "Q_Y": PreparedMetric(q_y_prepared, QY_WINDOW),
    "CC": PreparedMetric(correlation_coefficient_prepared, 1),
}


class SourcePair:
    """The two sources of one pair, prepared once (see the module docstring)."""

    def __init__(self, a, b, data_range=1.0):
        self.data_range = data_range
        self.a, self.b = map(Prepared, prepare(a, b, data_range=data_range))

    def score(self, fused, names: Iterable[str]) -> Dict[str, float]:
        """{name: value} of the named metrics (keys of PREPARED_METRICS) of ``fused`` against the sources."""
        names = list(names)
        unknown = [n for n in names if n not in PREPARED_METRICS]
        if unknown:
            raise InputError(f"Unknown metric(s) {', '.join(map(repr, unknown))}; "
                             f"choose from: {', '.join(PREPARED_METRICS)}.")
        f = to_gray255(fused, self.data_range)
        if f.shape != self.a.shape:
            raise InputError(f"Images must have the same shape; got {[self.a.shape, self.b.shape, f.shape]}.")
        fused_image = Prepared(f)
        out = {}
        for name in names:
            metric = PREPARED_METRICS[name]
            if min(f.shape) < metric.min_size:
                raise InputError(f"This metric needs images of at least {metric.min_size}x{metric.min_size} "
                                 f"pixels; got {f.shape}.")
            out[name] = float(metric.function(self.a, self.b, fused_image))
        return out
