"""Tests of MedFusionLib.metrics: closed-form values, invariances, an independent implementation
(scikit-image), a literal transcription of the FMI reference loop, and ranges on real Harvard pairs.

Expected values are derived by hand (derivations in the comments) or computed by other code; none is
a number copied from this implementation's own output.
"""
import math

import numpy as np
import pytest
import skimage.measure as skimage_measure
import skimage.metrics as skimage_metrics

from conftest import require_shared
from MedFusionLib.errors import InputError
from MedFusionLib.metrics import (
    METRICS,
    average_gradient,
    correlation_coefficient,
    edge_intensity,
    entropy,
    evaluate_all,
    feature_mutual_information,
    fmi_pixel,
    mutual_information,
    normalized_mutual_information,
    psnr,
    q_y,
    qabf,
    scd,
    spatial_frequency,
    ssim,
    ssim_mean,
    ssim_sum,
    standard_deviation,
    viff,
)

# ------------------------------------------------------------------------------------------ helpers


def phantom_pair(size=96):
    """A CT-like and an MR-like [0, 1] image of one 'head': shared outline, different content."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1.0)
    r2 = (xx - 0.5) ** 2 + (yy - 0.5) ** 2
    head, brain = r2 < 0.16, r2 < 0.11
    ct = np.where(head, 0.95, 0.0)  # bright skull ring ...
    ct = np.where(brain, 0.30, ct)  # ... around soft tissue
    ct = np.where((xx - 0.62) ** 2 + (yy - 0.40) ** 2 < 0.004, 0.80, ct)  # a calcification
    texture = 0.5 + 0.3 * np.sin(6 * np.pi * xx) * np.cos(4 * np.pi * yy)
    mr = np.where(brain, texture, np.where(head, 0.15, 0.0))
    return ct, mr


def halves(size=16, axis=1, low=0.0, high=1.0):
    """Two-level image: the first half (along axis) low, the second high."""
    img = np.full((size, size), low)
    if axis == 1:
        img[:, size // 2 :] = high
    else:
        img[size // 2 :, :] = high
    return img


def noisy(img, sigma, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0.0, sigma, img.shape), 0.0, 1.0)


# Q_AB/F's per-pixel score for a perfectly kept edge: G = 1, A = 1 in Xydeas & Petrovic's sigmoids.
Q_PERFECT_STRENGTH = 0.9994 / (1 + math.exp(-15 * (1 - 0.5)))
Q_PERFECT_ORIENTATION = 0.9879 / (1 + math.exp(-22 * (1 - 0.8)))


# ------------------------------------------------------------------------------ closed-form values


def test_entropy_of_two_equal_levels_is_one_bit():
    # p = (1/2, 1/2): -2 * (1/2) log2(1/2) = 1, on [0, 1] floats and on uint8 alike.
    assert entropy(halves()) == pytest.approx(1.0, abs=1e-12)
    assert entropy((halves() * 255).astype(np.uint8)) == pytest.approx(1.0, abs=1e-12)


def test_entropy_of_four_equal_levels_is_two_bits():
    img = np.repeat(np.array([[0, 85, 170, 255]], dtype=np.uint8), 4, axis=0)  # each level 1/4
    assert entropy(img) == pytest.approx(2.0, abs=1e-12)


def test_entropy_of_constant_image_is_zero():
    assert entropy(np.full((8, 8), 0.4)) == 0.0


def test_entropy_rounds_to_the_nearest_level_halves_up():
    # 0.4 -> level 0 and 0.6 -> level 1: two levels, 1 bit (truncation would give one level, 0 bits).
    assert entropy(np.array([[0.4, 0.6]]), data_range=255) == pytest.approx(1.0, abs=1e-12)
    # Halves go up, as MATLAB's uint8(): 126.5 -> 127 differs from 126 (round-half-even would merge them).
    assert entropy(np.array([[126.5, 126.0]]), data_range=255) == pytest.approx(1.0, abs=1e-12)


def test_mutual_information_of_image_with_itself_is_its_entropy():
    ct, _ = phantom_pair()
    constant = np.full_like(ct, 0.5)
    # MI(A, A) = H(A); MI(const, A) = 0, so MI(A, F) + MI(B, F) = H(A).
    assert mutual_information(ct, constant, ct) == pytest.approx(entropy(ct), abs=1e-12)
    assert mutual_information(ct, ct, ct) == pytest.approx(2 * entropy(ct), abs=1e-12)


def test_mutual_information_of_independent_halves_is_zero():
    # A splits left/right, F top/bottom: the four quadrants have joint p = 1/4 each = p_A * p_F,
    # so MI = 1 + 1 - 2 = 0 bits, and NMI = 0 too.
    a, f = halves(axis=1), halves(axis=0)
    assert mutual_information(a, a, f) == pytest.approx(0.0, abs=1e-12)
    assert normalized_mutual_information(a, a, f) == pytest.approx(0.0, abs=1e-12)


def test_normalized_mutual_information_of_identical_images_is_two():
    # 2 * [H / (H + H) + H / (H + H)] = 2.
    ct, _ = phantom_pair()
    assert normalized_mutual_information(ct, ct, ct) == pytest.approx(2.0, abs=1e-12)


def test_standard_deviation_of_known_array():
    # Levels 0, 51, ..., 255 (step 51): mean 127.5, deviations +-25.5 * (1, 3, 5),
    # variance = 25.5^2 * 2 * (1 + 9 + 25) / 6 = 25.5^2 * 35 / 3.
    img = np.array([[0, 51, 102, 153, 204, 255]], dtype=np.uint8)
    assert standard_deviation(img) == pytest.approx(25.5 * math.sqrt(35 / 3), rel=1e-12)


def ramp(rows=32, cols=32, dx=2.0, dy=3.0):
    """F[i, j] = dy * i + dx * j on the 0-255 scale (max 5 * 31 = 155 at 32x32)."""
    i, j = np.mgrid[0:rows, 0:cols].astype(float)
    return dy * i + dx * j


def test_spatial_frequency_of_ramp():
    # Every horizontal difference is 2 and every vertical one 3: RF^2 = 4, CF^2 = 9, SF = sqrt(13),
    # whether the ramp is given on 0-255 (data_range=255) or on [0, 1].
    f = ramp()
    assert spatial_frequency(f, data_range=255) == pytest.approx(math.sqrt(13), rel=1e-12)
    assert spatial_frequency(f / 255.0) == pytest.approx(math.sqrt(13), rel=1e-12)


def test_average_gradient_of_ramp():
    # Forward differences dx = 2, dy = 3 everywhere: AG = sqrt((4 + 9) / 2) = sqrt(6.5).
    assert average_gradient(ramp(), data_range=255) == pytest.approx(math.sqrt(6.5), rel=1e-12)


def test_spatial_frequency_and_average_gradient_of_a_spike():
    # F = 9 at the centre of a 3x3 zero image.
    # SF: 6 horizontal pairs, two of them differ by 9 -> RF^2 = 2 * 81 / 6 = 27; CF^2 = 27 likewise;
    #     SF = sqrt(54) (means over the differences that exist, not over all 9 pixels).
    # AG: forward differences at the 4 positions (i, j < 2): (0,0) dx = dy = 0; (0,1) dy = 9;
    #     (1,0) dx = 9; (1,1) dx = dy = -9. AG = (0 + 9/sqrt(2) + 9/sqrt(2) + 9) / 4 = 9 (1 + sqrt(2)) / 4.
    spike = np.zeros((3, 3))
    spike[1, 1] = 9.0
    assert spatial_frequency(spike, data_range=255) == pytest.approx(math.sqrt(54), rel=1e-12)
    assert average_gradient(spike, data_range=255) == pytest.approx(9 * (1 + math.sqrt(2)) / 4, rel=1e-12)


def test_edge_intensity_of_horizontal_ramp():
    # F = s * j, N columns, replicated border. Sobel x = (1 + 2 + 1) * (F[j+1] - F[j-1]): 8s inside,
    # 4s in the two border columns (replication halves the difference); Sobel y = 0.
    # EI = (2 * 4s + (N - 2) * 8s) / N = 8s (N - 1) / N.
    s, n = 2.0, 32
    assert edge_intensity(ramp(n, n, dx=s, dy=0.0), data_range=255) == pytest.approx(8 * s * (n - 1) / n)


def test_psnr_of_known_offsets():
    a = ramp(16, 16, dx=5.0, dy=7.0)  # 0..180 on 0-255
    d = 10.0
    # F = A + d with B = A: MSE = d^2, PSNR = 20 log10(255 / d).
    assert psnr(a, a, a + d, data_range=255) == pytest.approx(20 * math.log10(255 / d), rel=1e-12)
    # B = A + 3d: MSE(B, F) = (2d)^2, mean MSE = (d^2 + 4 d^2) / 2 = 2.5 d^2.
    expected = 10 * math.log10(255**2 / (2.5 * d * d))
    assert psnr(a, a + 3 * d, a + d, data_range=255) == pytest.approx(expected, rel=1e-12)
    assert psnr(a, a, a, data_range=255) == math.inf


def test_correlation_coefficient_with_fused_equal_to_a():
    # r(A, A) = 1; B (top/bottom halves) is exactly uncorrelated with A (left/right halves): (1 + 0) / 2.
    a, b = halves(axis=1), halves(axis=0)
    assert correlation_coefficient(a, b, a) == pytest.approx(0.5, abs=1e-12)
    assert correlation_coefficient(a, a, a) == pytest.approx(1.0, abs=1e-12)


def test_scd_of_additive_fusion_is_two():
    # F = A + B: F - B = A and F - A = B, so SCD = r(A, A) + r(B, B) = 2.
    ct, mr = phantom_pair()
    a, b = 0.5 * ct, 0.5 * mr
    assert scd(a, b, a + b) == pytest.approx(2.0, abs=1e-12)


def test_ssim_of_fused_equal_to_a():
    ct, mr = phantom_pair()
    assert ssim(ct, ct) == pytest.approx(1.0, abs=1e-12)
    assert ssim_sum(ct, mr, ct) == pytest.approx(1.0 + ssim(mr, ct), abs=1e-12)
    assert ssim_mean(ct, mr, ct) == pytest.approx((1.0 + ssim(mr, ct)) / 2, abs=1e-12)


def test_qabf_with_fused_equal_to_a_and_flat_b():
    # B = 0 has no gradient (zero padding included), so only A's edges weigh. F = A keeps every edge
    # exactly (G = 1, orientation difference 0): Q = Qg(1) * Qa(1) everywhere.
    ct, _ = phantom_pair()
    flat = np.zeros_like(ct)
    assert qabf(ct, flat, ct) == pytest.approx(Q_PERFECT_STRENGTH * Q_PERFECT_ORIENTATION, rel=1e-12)
    # A = B = F gives the same value: both terms are perfect.
    assert qabf(ct, ct, ct) == pytest.approx(Q_PERFECT_STRENGTH * Q_PERFECT_ORIENTATION, rel=1e-12)


def test_qabf_with_fused_at_half_contrast():
    # F = A / 2: Sobel is linear, so g_F = g_A / 2 and orientations agree. G = 0.5 = sigma_g puts the
    # strength sigmoid at its midpoint: Qg = 0.9994 / (1 + e^0) = 0.4997.
    ct, _ = phantom_pair()
    expected = 0.9994 / 2 * Q_PERFECT_ORIENTATION
    assert qabf(ct, np.zeros_like(ct), ct / 2) == pytest.approx(expected, rel=1e-12)


def test_viff_of_identical_images_is_one():
    # F = A = B: g = 1 and the residual variance is 0 (clamped to 1e-10) at every scale, so
    # VID = log10(1 + s^2 / (1e-10 + s_n^2)) ~= VIND; each scale's ratio is 1 and the weights sum to 1.
    ct, mr = phantom_pair()
    img = 0.5 * ct + 0.5 * mr
    assert viff(img, img, img) == pytest.approx(1.0, abs=1e-9)


def test_q_y_of_identical_images_is_one():
    # Every local SSIM is 1, so both branches of Q_Y give 1.
    ct, mr = phantom_pair()
    img = 0.5 * ct + 0.5 * mr
    assert q_y(img, img, img) == pytest.approx(1.0, abs=1e-12)


def test_fmi_is_one_when_fused_is_a_positive_affine_copy():
    # Per window, min-max normalisation removes a positive affine change, so the normalised feature
    # patches of A and F are identical: c = 1, the comonotone bound has correlation 1 (identical
    # marginals), phi = 1, the joint pdf is diagonal, MI = H and nfmi = 2H / 2H = 1.
    # (The texture has no flat window; flat ones follow the next test's rule.)
    img = np.random.default_rng(5).uniform(0.1, 0.9, size=(24, 24))
    assert fmi_pixel(img, img, 0.5 * img + 0.25) == pytest.approx(1.0, abs=1e-9)
    assert fmi_pixel(img, img, img) == 1.0


def test_fmi_of_a_flat_window_against_a_different_patch_is_zero():
    # A flat patch has a uniform pdf, whose deviations are all 0: the pdf correlation c is 0, so fmi.m
    # uses the product (independence) joint pdf, MI = 0 and that window scores 0.
    flat = np.zeros((12, 12))
    assert fmi_pixel(flat, flat, np.full_like(flat, 0.5)) == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------------------------------- invariances

SYMMETRIC = [name for name in METRICS if name != "VIFF"]  # VIFF's tie rule (equal gains -> B) is not symmetric


@pytest.mark.parametrize("name", SYMMETRIC)
def test_metric_is_symmetric_in_the_two_sources(name):
    ct, mr = phantom_pair(64)
    fused = noisy(0.6 * ct + 0.4 * mr, 0.02)
    fn = METRICS[name].function
    assert fn(ct, mr, fused) == pytest.approx(fn(mr, ct, fused), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("name", list(METRICS))
def test_uint8_and_unit_float_inputs_give_the_same_value(name):
    ct, mr = phantom_pair(64)
    a8, b8 = (np.round(x * 255).astype(np.uint8) for x in (ct, mr))
    f8 = np.maximum(a8, b8)
    fn = METRICS[name].function
    assert fn(a8, b8, f8) == pytest.approx(fn(a8 / 255.0, b8 / 255.0, f8 / 255.0), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("name", ["SSIM", "Q_ABF", "VIFF", "Q_Y", "FMI_pixel"])
def test_noise_on_the_fused_image_lowers_the_score(name):
    ct, mr = phantom_pair()
    clean = 0.5 * ct + 0.5 * mr
    fn = METRICS[name].function
    scores = [fn(ct, mr, noisy(clean, sigma)) for sigma in (0.0, 0.03, 0.1)]
    assert scores[0] > scores[1] > scores[2]


def test_out_of_range_input_is_rejected_with_a_hint():
    ct, mr = phantom_pair(32)
    with pytest.raises(InputError, match="data_range=255"):
        entropy(ct * 255.0)  # 0-255 floats passed with the default [0, 1] convention
    with pytest.raises(InputError, match="same shape"):
        psnr(ct, mr[:-1], ct)
    with pytest.raises(InputError, match="2D"):
        entropy(np.zeros((4, 4, 3)))


def test_too_small_images_are_rejected_not_miscomputed():
    # VIFF's fourth scale needs 41 pixels: 41 -> 17 valid -> ... -> one 3x3 window; 40 leaves none.
    ct, mr = phantom_pair(41)
    assert math.isfinite(viff(ct, mr, 0.5 * (ct + mr)))
    with pytest.raises(InputError, match="at least 41x41"):
        viff(ct[:40, :40], mr[:40, :40], ct[:40, :40])
    with pytest.raises(InputError, match="at least 11x11"):
        ssim(ct[:10, :10], mr[:10, :10])


def test_small_overshoot_is_clipped_like_an_8_bit_save():
    img = np.linspace(0, 1, 64).reshape(8, 8)
    # 3% over full scale is within tolerance: clipped to 1, as saving to 8 bits would.
    assert standard_deviation(img * 1.03) == pytest.approx(standard_deviation(np.clip(img * 1.03, 0, 1)), rel=1e-12)


# ---------------------------------------------------------------------- independent implementations



def skimage_ssim(x, y):
    return skimage_metrics.structural_similarity(
        x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
    )


def test_ssim_agrees_with_scikit_image():
    ct, mr = phantom_pair()
    fused = noisy(np.maximum(ct, mr), 0.05)
    assert ssim(ct, fused) == pytest.approx(skimage_ssim(ct, fused), abs=1e-9)
    expected = skimage_ssim(ct, fused) + skimage_ssim(mr, fused)
    assert ssim_sum(ct, mr, fused) == pytest.approx(expected, abs=1e-9)


def test_psnr_agrees_with_scikit_image():
    ct, mr = phantom_pair()
    fused = noisy(0.5 * (ct + mr), 0.05)
    sk_a = skimage_metrics.peak_signal_noise_ratio(ct, fused, data_range=1.0)
    assert psnr(ct, ct, fused) == pytest.approx(sk_a, abs=1e-9)
    # Recover each MSE from skimage's PSNR (10 log10(1 / MSE)) and average them.
    sk_b = skimage_metrics.peak_signal_noise_ratio(mr, fused, data_range=1.0)
    mean_mse = (10 ** (-sk_a / 10) + 10 ** (-sk_b / 10)) / 2
    assert psnr(ct, mr, fused) == pytest.approx(10 * math.log10(1 / mean_mse), abs=1e-9)


def test_entropy_agrees_with_scikit_image():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, size=(64, 64)).astype(np.uint8)
    assert entropy(img) == pytest.approx(skimage_measure.shannon_entropy(img, base=2), abs=1e-9)


def test_mutual_information_agrees_with_scikit_image():
    # skimage's NMI is Studholme's Y = (H(X) + H(F)) / H(X, F). With 256 bins over 0..255 every grey
    # level has its own bin, so MI = H(X) + H(F) - (H(X) + H(F)) / Y.
    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, size=(64, 64)).astype(np.uint8)
    f = np.clip(a.astype(int) + rng.integers(-20, 21, size=a.shape), 0, 255).astype(np.uint8)
    a[0, 0], a[0, 1], f[0, 0], f[0, 1] = 0, 255, 0, 255  # both span the full 0..255 bin range
    studholme = skimage_metrics.normalized_mutual_information(a, f, bins=256)
    h_sum = skimage_measure.shannon_entropy(a) + skimage_measure.shannon_entropy(f)
    expected_mi = h_sum - h_sum / studholme
    constant = np.zeros_like(a)
    assert mutual_information(a, constant, f) == pytest.approx(expected_mi, abs=1e-9)


def _fmi_window_by_the_loop(x_sub, f_sub):
    """One window of Haghighat's fmi.m, written out with its loops (an oracle for the vectorised code)."""
    if np.array_equal(x_sub, f_sub):
        return 1.0

    def pdf_of(sub):
        lo, hi = sub.min(), sub.max()
        norm = np.ones_like(sub) if hi == lo else (sub - lo) / (hi - lo)
        col = norm.flatten(order="F")  # MATLAB's sub(:)
        return col / col.sum()

    xp, fp = pdf_of(x_sub), pdf_of(f_sub)
    n = len(xp)
    xc, fc = [xp[0]], [fp[0]]
    for i in range(1, n):
        xc.append(xp[i] + xc[-1])
        fc.append(fp[i] + fc[-1])
    xt, ft = xp - xp.mean(), fp - fp.mean()
    s = sum(xt * ft)
    c = 0.0 if s == 0 else s / math.sqrt(sum(xt * xt) * sum(ft * ft))
    xsd = math.sqrt(sum((i + 1) ** 2 * xp[i] for i in range(n)) - sum((i + 1) * xp[i] for i in range(n)) ** 2)
    fsd = math.sqrt(sum((i + 1) ** 2 * fp[i] for i in range(n)) - sum((i + 1) * fp[i] for i in range(n)) ** 2)

    if c >= 0:
        bound = lambda u, v: 0.5 * (u + v - abs(u - v))  # noqa: E731 (Frechet upper bound)
        skip = c == 0 or xsd == 0 or fsd == 0
    else:
        bound = lambda u, v: 0.5 * (u + v - 1 + abs(u + v - 1))  # noqa: E731 (Frechet lower bound)
        skip = xsd == 0 or fsd == 0
    if skip:
        coef = 0.0
    else:
        cov = sum(bound(fc[i], xc[j]) - fc[i] * xc[j] for i in range(n) for j in range(n))
        coef = c / (cov / (fsd * xsd))

    def cdf(i, j):  # the bound with CDF value 0 before the first cell
        return 0.0 if i < 0 or j < 0 else bound(fc[i], xc[j])

    joint_entropy = 0.0
    for i in range(n):
        for j in range(n):
            cell = cdf(i, j) - cdf(i - 1, j) - cdf(i, j - 1) + cdf(i - 1, j - 1)
            p = coef * cell + (1 - coef) * fp[i] * xp[j]
            if p != 0:
                joint_entropy += (-p * np.log2(complex(p))).real  # MATLAB's real(-p .* log2(p))
    hx = -sum(p * math.log2(p) for p in xp if p != 0)
    hf = -sum(p * math.log2(p) for p in fp if p != 0)
    mi = hx + hf - joint_entropy
    return 0.0 if mi == 0 else 2 * mi / (hx + hf)


def _fmi_by_the_loop(a_feat, b_feat, f_feat, w=3):
    h = w // 2
    rows, cols = f_feat.shape
    values = []
    for p in range(h, rows - h):
        for q in range(h, cols - h):
            win = (slice(p - h, p + h + 1), slice(q - h, q + h + 1))
            values.append(0.5 * (_fmi_window_by_the_loop(a_feat[win], f_feat[win])
                                 + _fmi_window_by_the_loop(b_feat[win], f_feat[win])))
    return float(np.mean(values))


def _matlab_gradient_x(img):
    g = np.empty_like(img)
    g[:, 1:-1] = (img[:, 2:] - img[:, :-2]) / 2
    g[:, 0] = img[:, 1] - img[:, 0]
    g[:, -1] = img[:, -1] - img[:, -2]
    return g


@pytest.fixture
def small_textured_triple():
    rng = np.random.default_rng(7)
    a = rng.integers(0, 256, size=(10, 11)).astype(float)
    b = rng.integers(0, 256, size=(10, 11)).astype(float)
    a[:4, :4] = 40.0  # a flat patch: constant-window branches
    f = np.clip(0.5 * (a + b) + rng.normal(0, 30, a.shape), 0, 255)
    f[6:, 6:] = a[6:, 6:]  # identical patches: the shortcut branch
    return a, b, f


def test_fmi_pixel_matches_a_literal_loop_transcription(small_textured_triple):
    a, b, f = small_textured_triple
    expected = _fmi_by_the_loop(a, b, f)
    assert feature_mutual_information(a, b, f, feature="none", data_range=255) == pytest.approx(expected, abs=1e-10)


def test_fmi_gradient_matches_a_literal_loop_transcription(small_textured_triple):
    a, b, f = small_textured_triple
    expected = _fmi_by_the_loop(*(_matlab_gradient_x(x) for x in (a, b, f)))
    got = feature_mutual_information(a, b, f, feature="gradient", data_range=255)
    assert got == pytest.approx(expected, abs=1e-10)


def _matlab_gaussian(n, sigma):
    """fspecial('gaussian', n, sigma), built in 2D as MATLAB does (not as an outer product)."""
    half = (n - 1) / 2
    y, x = np.mgrid[-half : half + 1, -half : half + 1]
    h = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    h[h < np.finfo(float).eps * h.max()] = 0
    return h / h.sum()


def _viff_by_the_reference_steps(im1, im2, imf):
    """VIFF_Public.m written out step by step with scipy's 2D correlation (filter2 'valid')."""
    from scipy.signal import correlate2d

    def filter2(win, img):
        return correlate2d(img, win, mode="valid")

    def com_vid_vind_g(ref, dist, sq):
        num, den, gains = [], [], []
        for scale in range(1, 5):
            n = 2 ** (4 - scale + 1) + 1
            win = _matlab_gaussian(n, n / 5)
            if scale > 1:
                ref = filter2(win, ref)[::2, ::2]
                dist = filter2(win, dist)[::2, ::2]
            mu1, mu2 = filter2(win, ref), filter2(win, dist)
            sigma1_sq = filter2(win, ref * ref) - mu1 * mu1
            sigma2_sq = filter2(win, dist * dist) - mu2 * mu2
            sigma12 = filter2(win, ref * dist) - mu1 * mu2
            sigma1_sq[sigma1_sq < 0] = 0
            sigma2_sq[sigma2_sq < 0] = 0
            g = sigma12 / (sigma1_sq + 1e-10)
            sv_sq = sigma2_sq - g * sigma12
            m = sigma1_sq < 1e-10
            g[m] = 0
            sv_sq[m] = sigma2_sq[m]
            sigma1_sq[m] = 0
            m = sigma2_sq < 1e-10
            g[m] = 0
            sv_sq[m] = 0
            m = g < 0
            sv_sq[m] = sigma2_sq[m]
            g[m] = 0
            sv_sq[sv_sq <= 1e-10] = 1e-10
            gains.append(g)
            num.append(np.log10(1 + g**2 * sigma1_sq / (sv_sq + sq)))
            den.append(np.log10(1 + sigma1_sq / sq))
        return num, den, gains

    sq, c = 0.005 * 255 * 255, 1e-7
    p = np.array([1, 0, 0.15, 1]) / 2.15
    t1n, t1d, t1g = com_vid_vind_g(im1, imf, sq)
    t2n, t2d, t2g = com_vid_vind_g(im2, imf, sq)
    f = []
    for i in range(4):
        use_1 = t1g[i] < t2g[i]
        z12, m12 = t2n[i].copy(), t2d[i].copy()
        z12[use_1], m12[use_1] = t1n[i][use_1], t1d[i][use_1]
        f.append(np.sum(z12 + c) / np.sum(m12 + c))
    return float(np.sum(np.array(f) * p))


def test_viff_matches_the_reference_steps():
    ct, mr = phantom_pair(64)
    a, b = ct * 255, mr * 255
    f = noisy(0.5 * (ct + mr), 0.05, seed=2) * 255
    assert viff(a, b, f, data_range=255) == pytest.approx(_viff_by_the_reference_steps(a, b, f), rel=1e-9)


def _qabf_by_the_reference_loops(p_a, p_b, p_f):
    """Xydeas-Petrovic Q_AB/F as the common MATLAB code computes it (conv2 'same', per-pixel loops)."""
    from scipy.signal import convolve2d

    h1 = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], float)
    h3 = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], float)

    def strength_angle(img):
        sx, sy = convolve2d(img, h3, mode="same"), convolve2d(img, h1, mode="same")
        angle = np.empty_like(img)
        for i in range(img.shape[0]):
            for j in range(img.shape[1]):
                angle[i, j] = math.pi / 2 if sx[i, j] == 0 else math.atan(sy[i, j] / sx[i, j])
        return np.sqrt(sx**2 + sy**2), angle

    def preservation(g_x, a_x, g_f, a_f):
        q = np.empty_like(g_x)
        for i in range(g_x.shape[0]):
            for j in range(g_x.shape[1]):
                if g_x[i, j] > g_f[i, j]:
                    G = g_f[i, j] / g_x[i, j]
                elif g_x[i, j] == g_f[i, j]:
                    G = 1.0  # the paper's ratio (the MATLAB code's special case would put g_F here)
                else:
                    G = g_x[i, j] / g_f[i, j]
                A = 1 - abs(a_x[i, j] - a_f[i, j]) / (math.pi / 2)
                q[i, j] = 0.9994 / (1 + math.exp(-15 * (G - 0.5))) * 0.9879 / (1 + math.exp(-22 * (A - 0.8)))
        return q

    (ga, aa), (gb, ab), (gf, af) = (strength_angle(x) for x in (p_a, p_b, p_f))
    return float(np.sum(preservation(ga, aa, gf, af) * ga + preservation(gb, ab, gf, af) * gb) / np.sum(ga + gb))


def test_qabf_matches_the_reference_loops():
    rng = np.random.default_rng(11)
    ct, mr = phantom_pair(24)
    a, b = noisy(ct, 0.05, seed=1) * 255, noisy(mr, 0.05, seed=3) * 255
    f = np.clip(0.5 * (a + b) + rng.normal(0, 10, a.shape), 0, 255)
    assert qabf(a, b, f, data_range=255) == pytest.approx(_qabf_by_the_reference_loops(a, b, f), rel=1e-12)


def _q_y_by_the_reference_steps(im1, im2, fused):
    """Liu's metricYang.m (as kept in MEFB) step by step, with scipy's 2D correlation (filter2 'valid')."""
    from scipy.signal import correlate2d

    window = _matlab_gaussian(7, 1.5)

    def ssim_yang(x, y):
        mu1, mu2 = correlate2d(x, window, "valid"), correlate2d(y, window, "valid")
        s1 = correlate2d(x * x, window, "valid") - mu1 * mu1
        s2 = correlate2d(y * y, window, "valid") - mu2 * mu2
        s12 = correlate2d(x * y, window, "valid") - mu1 * mu2
        c = 2e-16
        return ((2 * mu1 * mu2 + c) * (2 * s12 + c)) / ((mu1**2 + mu2**2 + c) * (s1 + s2 + c)), s1, s2

    map1, var1, var2 = ssim_yang(im1, im2)
    map2, _, _ = ssim_yang(im1, fused)
    map3, _, _ = ssim_yang(im2, fused)
    bin_map = map1 >= 0.75
    ramda = var1 / (var1 + var2)
    q = (ramda * map2 + (1 - ramda) * map3) * bin_map + np.maximum(map2, map3) * ~bin_map
    return float(np.mean(q[~np.isnan(q)]))


def test_q_y_matches_the_reference_steps():
    # Textured everywhere (no flat window), B equal to A on the left and unrelated on the right, so
    # both the redundant (SSIM(A, B) >= 0.75) and the complementary branch are exercised.
    ct, mr = phantom_pair(48)
    a = noisy(ct, 0.05, seed=1) * 255
    b = a.copy()
    b[:, 24:] = noisy(mr, 0.05, seed=3)[:, 24:] * 255
    f = noisy(0.5 * (ct + mr), 0.05, seed=5) * 255
    assert q_y(a, b, f, data_range=255) == pytest.approx(_q_y_by_the_reference_steps(a, b, f), rel=1e-9)


# --------------------------------------------------------------------------------------- registry


def test_registry_entries_are_well_formed():
    assert list(METRICS)[:5] == ["EN", "SD", "SF", "AG", "EI"]
    for name, (function, higher_is_better, description) in METRICS.items():
        assert callable(function), name
        assert isinstance(higher_is_better, bool), name
        assert description, name


def test_evaluate_all_selects_names_and_rejects_unknown_ones():
    ct, mr = phantom_pair(48)
    fused = 0.5 * (ct + mr)
    subset = evaluate_all(ct, mr, fused, names=["PSNR", "EN"])
    assert list(subset) == ["PSNR", "EN"]
    assert subset["EN"] == entropy(fused)
    with pytest.raises(InputError, match="Unknown metric"):
        evaluate_all(ct, mr, fused, names=["SL"])


def test_missing_shared_data_fails_under_ci_and_skips_elsewhere(monkeypatch, tmp_path):
    missing = tmp_path / "no-such-folder"
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="shared data missing"):
        require_shared(missing)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        require_shared(missing)


# ----------------------------------------------------------------------------------- real data

HARVARD_CT_MRI = ["2004.png", "28005.png", "32019.png"]  # three different cases


@pytest.fixture(scope="module")
def harvard_results(shared_data):
    """evaluate_all for average and max fusion of three real CT-MRI pairs."""
    import cv2

    folder = require_shared(shared_data / "harvard" / "CT-MRI")
    results = []
    for name in HARVARD_CT_MRI:
        ct = cv2.imread(str(require_shared(folder / "CT" / name)), cv2.IMREAD_GRAYSCALE)
        mr = cv2.imread(str(require_shared(folder / "MRI" / name)), cv2.IMREAD_GRAYSCALE)
        assert ct is not None and mr is not None, f"could not read the pair {name}"
        a, b = ct / 255.0, mr / 255.0
        results.append((name, evaluate_all(a, b, 0.5 * (a + b)), evaluate_all(a, b, np.maximum(a, b))))
    return results


PLAUSIBLE = {
    "EN": (0, 8), "SD": (0, 127.5), "SF": (0, 255), "AG": (0, 255), "EI": (0, 4 * 255 * math.sqrt(2)),
    "MI": (0, 16), "NMI": (0, 2), "FMI_pixel": (0, 1), "FMI_gradient": (0, 1), "SCD": (-2, 2),
    "SSIM": (-2, 2), "SSIM_mean": (-1, 1), "Q_ABF": (0, 1), "VIFF": (0, 1.5), "PSNR": (0, 100),
    "Q_Y": (-1, 1), "CC": (-1, 1),
}


def test_every_metric_is_finite_and_plausible_on_real_pairs(harvard_results):
    assert set(PLAUSIBLE) == set(METRICS)
    for name, average, maximum in harvard_results:
        for fusion, scores in (("average", average), ("max", maximum)):
            for metric, value in scores.items():
                low, high = PLAUSIBLE[metric]
                assert math.isfinite(value), f"{metric} of {fusion} fusion of {name} is {value}"
                assert low <= value <= high, f"{metric} of {fusion} fusion of {name} = {value}"


def test_max_fusion_is_sharper_than_average_on_real_pairs(harvard_results):
    # Averaging halves the contrast of any edge present in only one source; max keeps it.
    for name, average, maximum in harvard_results:
        assert maximum["SF"] > average["SF"], name
        assert maximum["EI"] > average["EI"], name
