"""Gradient-based fusion metrics: SF, AG, EI and Q_AB/F."""
from __future__ import annotations

import numpy as np

from ._common import Prepared, prepare, sobel


def spatial_frequency(img, data_range=None) -> float:
    """SF, spatial frequency of the fused image on the 0-255 scale. Higher is better.

    SF = sqrt(RF^2 + CF^2), RF^2 = mean over the M x (N-1) horizontal neighbour pairs of
    (F[i, j+1] - F[i, j])^2, CF^2 = the same over the (M-1) x N vertical pairs
    (Eskicioglu & Fisher 1995, "Image quality measures and their performance"). Convention: each mean
    is over the differences that exist (the textbook 1/(MN) differs by a factor (N-1)/N, < 0.4% at 256).
    Divide by 255 for the value on [0, 1] data.
    """
    return spatial_frequency_prepared(Prepared(prepare(img, data_range=data_range)[0]))


def spatial_frequency_prepared(img: Prepared) -> float:
    f = img.values
    row_frequency_sq = np.mean(np.diff(f, axis=1) ** 2) if f.shape[1] > 1 else 0.0
    column_frequency_sq = np.mean(np.diff(f, axis=0) ** 2) if f.shape[0] > 1 else 0.0
    return float(np.sqrt(row_frequency_sq + column_frequency_sq))


def average_gradient(img, data_range=None) -> float:
    """AG, average gradient of the fused image on the 0-255 scale. Higher is better.

    AG = 1/((M-1)(N-1)) sum_{i<M, j<N} sqrt( ((F[i+1,j] - F[i,j])^2 + (F[i,j+1] - F[i,j])^2) / 2 ),
    forward differences (the textbook form, e.g. Cui et al. 2015, Opt. Commun. 341). VIFB's MATLAB code
    uses central differences instead; the values differ slightly. Divide by 255 for [0, 1] data.
    """
    return average_gradient_prepared(Prepared(prepare(img, data_range=data_range, min_size=2)[0]))


def average_gradient_prepared(img: Prepared) -> float:
    f = img.values
    dx = f[:-1, 1:] - f[:-1, :-1]
    dy = f[1:, :-1] - f[:-1, :-1]
    return float(np.mean(np.sqrt((dx * dx + dy * dy) / 2.0)))


def edge_intensity(img, data_range=None) -> float:
    """EI, edge intensity: mean Sobel gradient magnitude of the fused image, 0-255 scale. Higher is better.

    EI = mean_ij sqrt(Sx^2 + Sy^2), Sx, Sy the 3x3 Sobel responses with replicated borders
    (as VIFB's metricsEdge_intensity.m; Rajalingam & Priya 2018). Divide by 255 for [0, 1] data
    (some papers, e.g. FusionCINN's table, report it that way).
    """
    return edge_intensity_prepared(Prepared(prepare(img, data_range=data_range)[0]))


def edge_intensity_prepared(img: Prepared) -> float:
    gx, gy = sobel(img.values, pad_mode="edge")
    return float(np.mean(np.hypot(gx, gy)))


# Xydeas & Petrovic's sigmoid constants (edge strength g, orientation alpha) and weighting exponent L.
QABF_GAMMA_G, QABF_KAPPA_G, QABF_SIGMA_G = 0.9994, -15.0, 0.5
QABF_GAMMA_A, QABF_KAPPA_A, QABF_SIGMA_A = 0.9879, -22.0, 0.8
QABF_L = 1.0


def _strength_and_orientation(img: np.ndarray):
    gx, gy = sobel(img, pad_mode="constant")  # zero padding, as MATLAB conv2(..., 'same') in the reference
    # The reference convolves (flipping the kernel), so its x response is left minus right. The sign
    # matters only where Sx = 0: alpha is then set to +pi/2, and we want the same side as the reference.
    gx = -gx
    strength = np.hypot(gx, gy)
    safe_gx = np.where(gx == 0, 1.0, gx)
    orientation = np.where(gx == 0, np.pi / 2, np.arctan(gy / safe_gx))  # in [-pi/2, pi/2]
    return strength, orientation


def _edges(img: Prepared):
    return img.memo("qabf_edges", lambda: _strength_and_orientation(img.values))


def _edge_preservation(g_src, a_src, g_fus, a_fus) -> np.ndarray:
    """Q^{XF}: how well F keeps X's edge strength and orientation at each pixel (Xydeas & Petrovic eq. 3-5)."""
    larger = np.maximum(g_src, g_fus)
    # Relative strength min/max; 1 where both are 0 (weight g_src = 0 there anyway).
    relative_strength = np.where(larger == 0, 1.0, np.minimum(g_src, g_fus) / np.where(larger == 0, 1.0, larger))
    return edge_preservation_of(relative_strength, a_src, a_fus)


def edge_preservation_of(relative_strength, a_src, a_fus) -> np.ndarray:
    """Q^{XF} from the relative edge strength G^{XF} and the two orientation maps (the two sigmoids)."""
    relative_orientation = 1.0 - np.abs(a_src - a_fus) / (np.pi / 2)
    q_strength = QABF_GAMMA_G / (1.0 + np.exp(QABF_KAPPA_G * (relative_strength - QABF_SIGMA_G)))
    q_orientation = QABF_GAMMA_A / (1.0 + np.exp(QABF_KAPPA_A * (relative_orientation - QABF_SIGMA_A)))
    return q_strength * q_orientation


def qabf(a, b, fused, data_range=None) -> float:
    """Q_AB/F, Xydeas & Petrovic's edge-preservation metric. Higher is better, range [0, 1].

    Per pixel, Sobel strength g and orientation alpha = atan(Sy / Sx) (pi/2 where Sx = 0) of A, B, F;
    G^{AF} = min(g_A, g_F) / max(g_A, g_F), A^{AF} = 1 - |alpha_A - alpha_F| / (pi/2);
    Q^{AF} = Gg / (1 + exp(kg (G^{AF} - sg))) * Ga / (1 + exp(ka (A^{AF} - sa)));
    Q_AB/F = sum(Q^{AF} w_A + Q^{BF} w_B) / sum(w_A + w_B), w = g^L.
    Constants: Gg 0.9994, kg -15, sg 0.5, Ga 0.9879, ka -22, sa 0.8, L = 1; Sobel with zero padding.
    (Xydeas & Petrovic 2000, "Objective image fusion performance measure", Electron. Lett. 36(4).)
    With these constants a perfectly kept edge scores Q^{AF} = 0.9994/(1+e^-7.5) * 0.9879/(1+e^-4.4)
    ~= 0.9748, so that is the practical maximum. Note: the widely copied MATLAB code sets G^{AF} = g_F
    (not 1) where g_A == g_F exactly; we follow the paper's ratio. Scale invariant.
    Returns NaN when neither source has any gradient (the weights are all zero).
    """
    return qabf_prepared(*map(Prepared, prepare(a, b, fused, data_range=data_range)))


def qabf_prepared(x: Prepared, y: Prepared, f: Prepared) -> float:
    """:func:`qabf` of prepared images (each image's Sobel strength and orientation computed once)."""
    g_a, a_a = _edges(x)
    g_b, a_b = _edges(y)
    g_f, a_f = _edges(f)
    w_a, w_b = g_a**QABF_L, g_b**QABF_L
    denominator = np.sum(w_a + w_b)
    if denominator == 0:
        return float("nan")
    numerator = np.sum(_edge_preservation(g_a, a_a, g_f, a_f) * w_a + _edge_preservation(g_b, a_b, g_f, a_f) * w_b)
    return float(numerator / denominator)
