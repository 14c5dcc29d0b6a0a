"""Structure- and perception-based fusion metrics: SSIM, Q_Y and VIFF."""
from __future__ import annotations

import numpy as np

from ._common import filter_valid, gaussian_kernel_1d, prepare

# ---------------------------------------------------------------------------------------------- SSIM
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03


def _local_moments(x: np.ndarray, y: np.ndarray, kernel: np.ndarray):
    """Local means, variances and covariance under a Gaussian window, 'valid' positions only."""
    mu_x, mu_y = filter_valid(x, kernel), filter_valid(y, kernel)
    var_x = filter_valid(x * x, kernel) - mu_x * mu_x
    var_y = filter_valid(y * y, kernel) - mu_y * mu_y
    cov = filter_valid(x * y, kernel) - mu_x * mu_y
    return mu_x, mu_y, var_x, var_y, cov


def _ssim_map(x, y, kernel, c1, c2):
    mu_x, mu_y, var_x, var_y, cov = _local_moments(x, y, kernel)
    num = (2.0 * mu_x * mu_y + c1) * (2.0 * cov + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return num / den


def ssim(x, y, data_range=None) -> float:
    """SSIM(X, Y) of one image pair (Wang, Bovik, Sheikh & Simoncelli 2004, IEEE TIP 13(4)).

    SSIM = mean over valid window positions of
    (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2)),
    11x11 Gaussian window with sigma 1.5, population (co)variances, C1 = (0.01 L)^2, C2 = (0.03 L)^2,
    L = 255 on the 0-255 scale -- i.e. data range = the image's full scale (1 for [0, 1] data). Same as
    Wang's ssim.m and skimage's structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=full scale). Higher is better, range [-1, 1].
    """
    u, v = prepare(x, y, data_range=data_range, min_size=SSIM_WINDOW)
    kernel = gaussian_kernel_1d(SSIM_WINDOW, SSIM_SIGMA)
    return float(np.mean(_ssim_map(u, v, kernel, (SSIM_K1 * 255.0) ** 2, (SSIM_K2 * 255.0) ** 2)))


def ssim_sum(a, b, fused, data_range=None) -> float:
    """SSIM for fusion, summed: SSIM(A, F) + SSIM(B, F) (VIFB / EDPSN convention). Higher is better.

    See :func:`ssim` for the window and constants. Range [-2, 2].
    """
    return ssim(a, fused, data_range) + ssim(b, fused, data_range)


def ssim_mean(a, b, fused, data_range=None) -> float:
    """SSIM for fusion, averaged: (SSIM(A, F) + SSIM(B, F)) / 2. Higher is better, range [-1, 1].

    The convention of tables reporting SSIM below 1 (e.g. MFEnet's 0.74); see :func:`ssim`.
    """
    return 0.5 * ssim_sum(a, b, fused, data_range)


# ----------------------------------------------------------------------------------------------- Q_Y
QY_WINDOW, QY_SIGMA, QY_C, QY_THRESHOLD = 7, 1.5, 2e-16, 0.75
_FLAT_VARIANCE = 1e-10  # in (0-255 units)^2: far below one grey level of local variation


def _yang_moments(x, y, kernel):
    """Local moments for Q_Y with floating-point cancellation removed in flat regions.

    With Q_Y's near-zero constants, E[x^2] - mu^2 rounding noise (~1e-13) in a flat window would decide
    the SSIM ratio; such variances are set to exactly 0, and so is the covariance next to them.
    """
    mu_x, mu_y, var_x, var_y, cov = _local_moments(x, y, kernel)
    var_x = np.where(var_x < _FLAT_VARIANCE, 0.0, var_x)
    var_y = np.where(var_y < _FLAT_VARIANCE, 0.0, var_y)
    cov = np.where((var_x == 0) | (var_y == 0), 0.0, cov)
    return mu_x, mu_y, var_x, var_y, cov


def _yang_ssim_map(x, y, kernel):
    mu_x, mu_y, var_x, var_y, cov = _yang_moments(x, y, kernel)
    num = (2.0 * mu_x * mu_y + QY_C) * (2.0 * cov + QY_C)
    den = (mu_x * mu_x + mu_y * mu_y + QY_C) * (var_x + var_y + QY_C)
    return num / den, var_x, var_y


def q_y(a, b, fused, data_range=None) -> float:
    """Q_Y, Yang et al.'s SSIM-based fusion metric. Higher is better, range [-1, 1] (usually [0, 1]).

    Local SSIM maps (7x7 Gaussian window, sigma 1.5, 'valid', C1 = C2 = 2e-16 as in Liu's metricYang.m):
    where SSIM(A, B) >= 0.75 (the sources are redundant) Q = l SSIM(A, F) + (1 - l) SSIM(B, F) with
    l = s_A^2 / (s_A^2 + s_B^2); elsewhere (complementary) Q = max(SSIM(A, F), SSIM(B, F)).
    Q_Y = mean of Q over positions where l is defined (both sources flat there -> excluded, as the
    reference's NaN removal does). (Yang, Zhang, Wang & Liu 2008, "A novel similarity based quality
    metric for image fusion", Inf. Fusion 9(2).) Local variances below 1e-10 (0-255 units) count as 0.
    Returns NaN when both sources are flat everywhere.
    """
    x, y, f = prepare(a, b, fused, data_range=data_range, min_size=QY_WINDOW)
    kernel = gaussian_kernel_1d(QY_WINDOW, QY_SIGMA)
    ssim_ab, var_a, var_b = _yang_ssim_map(x, y, kernel)
    ssim_af, _, _ = _yang_ssim_map(x, f, kernel)
    ssim_bf, _, _ = _yang_ssim_map(y, f, kernel)
    defined = (var_a + var_b) > 0
    if not np.any(defined):
        return float("nan")
    weight_a = var_a[defined] / (var_a[defined] + var_b[defined])
    redundant = ssim_ab[defined] >= QY_THRESHOLD
    weighted = weight_a * ssim_af[defined] + (1.0 - weight_a) * ssim_bf[defined]
    best = np.maximum(ssim_af[defined], ssim_bf[defined])
    return float(np.mean(np.where(redundant, weighted, best)))


# ---------------------------------------------------------------------------------------------- VIFF
VIFF_NOISE_VAR = 0.005 * 255.0**2  # visual noise sigma_n^2 on the 0-255 scale (Han et al.)
VIFF_C = 1e-7
VIFF_SCALE_WEIGHTS = np.array([1.0, 0.0, 0.15, 1.0]) / 2.15
VIFF_MIN_SIZE = 41  # smallest side for which all four scales keep at least one valid window
_EPS = 1e-10


def _viff_scale_maps(ref: np.ndarray, dist: np.ndarray):
    """Per scale: (VID, VIND, g) maps of source ``ref`` against fused ``dist`` (Sheikh & Bovik's GSM model)."""
    maps = []
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1  # 17, 9, 5, 3
        kernel = gaussian_kernel_1d(n, n / 5.0)
        if scale > 1:  # low-pass then decimate by 2 for the next scale
            ref = filter_valid(ref, kernel)[::2, ::2]
            dist = filter_valid(dist, kernel)[::2, ::2]
        _, _, var_r, var_d, cov = _local_moments(ref, dist, kernel)
        var_r = np.maximum(var_r, 0.0)
        var_d = np.maximum(var_d, 0.0)
        # Distortion channel dist = g * ref + v, v with variance sv_sq; the degenerate cases as in the reference.
        g = cov / (var_r + _EPS)
        sv_sq = var_d - g * cov
        flat_ref = var_r < _EPS
        g = np.where(flat_ref, 0.0, g)
        sv_sq = np.where(flat_ref, var_d, sv_sq)
        var_r = np.where(flat_ref, 0.0, var_r)
        flat_dist = var_d < _EPS
        g = np.where(flat_dist, 0.0, g)
        sv_sq = np.where(flat_dist, 0.0, sv_sq)
        negative = g < 0
        sv_sq = np.where(negative, var_d, sv_sq)
        g = np.where(negative, 0.0, g)
        sv_sq = np.maximum(sv_sq, _EPS)
        vid = np.log10(1.0 + g * g * var_r / (sv_sq + VIFF_NOISE_VAR))
        vind = np.log10(1.0 + var_r / VIFF_NOISE_VAR)
        maps.append((vid, vind, g))
    return maps


def viff(a, b, fused, data_range=None) -> float:
    """VIFF, Han et al.'s visual-information-fidelity fusion metric. Higher is better (1 = A = B = F).

    Follows the structure of the authors' VIFF_Public.m on the 0-255 scale: for each source X and each of
    4 scales (Gaussian windows N = 17, 9, 5, 3 with sigma N/5, 'valid' filtering, low-pass + decimation by
    2 between scales) a GSM channel F = g X + v gives VID = log10(1 + g^2 s_X^2 / (s_v^2 + s_n^2)) and
    VIND = log10(1 + s_X^2 / s_n^2), s_n^2 = 0.005 * 255^2. Per pixel, the two sources are combined by
    taking the maps of the source with the smaller gain g (ties: B), as the reference code does;
    VIFF_k = sum(VID + C) / sum(VIND + C), C = 1e-7, and VIFF = sum_k p_k VIFF_k with
    p = [1, 0, 0.15, 1] / 2.15. (Han, Cai, Cao & Xu 2013, "A new image fusion performance metric based
    on visual information fidelity", Inf. Fusion 14(2).) Images need at least 41x41 pixels.
    Because of the tie rule it is symmetric in A and B only up to ties in g.
    """
    x, y, f = prepare(a, b, fused, data_range=data_range, min_size=VIFF_MIN_SIZE)
    per_scale = []
    for (vid_a, vind_a, g_a), (vid_b, vind_b, g_b) in zip(_viff_scale_maps(x, f), _viff_scale_maps(y, f)):
        take_a = g_a < g_b
        vid = np.where(take_a, vid_a, vid_b)
        vind = np.where(take_a, vind_a, vind_b)
        per_scale.append(np.sum(vid + VIFF_C) / np.sum(vind + VIFF_C))
    return float(np.dot(VIFF_SCALE_WEIGHTS, per_scale))
