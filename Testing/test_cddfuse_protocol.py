"""`medfusion evaluate --protocol cddfuse` agrees with an independent computation of the CDDFuse scorer's formulas.

The independent side is written here from the formulas (numpy, scipy.signal, scikit-image), not with our
metrics: images read as that scorer reads them (OpenCV colour read, float32 BGR -> grey, np.round), EN in
bits, MI in nats (the scorer calls scikit-learn's mutual_info_score, natural log), SD/SF on 0-255,
SCD, pixel-domain VIF with sigma_n^2 = 2 summed over both sources, Q_AB/F with the scorer's equal-strength
rule, and scikit-image SSIM with its defaults (data_range 2, what scikit-image 0.19 used for float32 images)
summed over both sources. Agreement is required to 2 decimals, on real Harvard pairs (grey and colour).
"""
from __future__ import annotations

import contextlib
import csv
import io
import math

import cv2
import numpy as np
import pytest
from scipy.signal import convolve2d
from skimage.metrics import structural_similarity

from MedFusionLib.cli import main
from MedFusionLib.errors import InputError
from MedFusionLib.metrics import cddfuse

TWO_DECIMALS = 0.005
NAMES = ["EN", "SD", "SF", "MI", "SCD", "VIF", "Qabf", "SSIM"]


# ------------------------------------------------------------------ the independent computation


def read_grey(path):
    bgr = cv2.imread(str(path))  # 3 channels, as the scorer reads every image
    return np.round(cv2.cvtColor(bgr.astype(np.float32), cv2.COLOR_BGR2GRAY))


def entropy_bits(f):
    counts = np.histogram(f, bins=256, range=(0, 256))[0]
    p = counts[counts > 0] / f.size
    return -np.sum(p * np.log2(p))


def mi_nats(x, y):
    joint = np.histogram2d(x.ravel(), y.ravel(), bins=256, range=[[0, 256], [0, 256]])[0] / x.size
    px, py = joint.sum(axis=1), joint.sum(axis=0)
    i, j = np.nonzero(joint)
    return np.sum(joint[i, j] * np.log(joint[i, j] / (px[i] * py[j])))


def corr(x, y):
    return np.corrcoef(x.ravel(), y.ravel())[0, 1]


def gaussian_window(n):
    half = (n - 1) / 2.0
    y, x = np.mgrid[-half : half + 1, -half : half + 1]
    h = np.exp(-(x * x + y * y) / (2.0 * (n / 5.0) ** 2))
    return h / h.sum()


def vifp(ref, dist, noise=2.0, eps=1e-10):
    ref, dist = ref.astype(np.float64), dist.astype(np.float64)
    num = den = 0.0
    for scale in range(1, 5):
        win = gaussian_window(2 ** (5 - scale) + 1)
        if scale > 1:
            ref = convolve2d(ref, win, mode="valid")[::2, ::2]
            dist = convolve2d(dist, win, mode="valid")[::2, ::2]
        mu1, mu2 = convolve2d(ref, win, mode="valid"), convolve2d(dist, win, mode="valid")
        s1 = np.maximum(convolve2d(ref * ref, win, mode="valid") - mu1 * mu1, 0)
        s2 = np.maximum(convolve2d(dist * dist, win, mode="valid") - mu2 * mu2, 0)
        s12 = convolve2d(ref * dist, win, mode="valid") - mu1 * mu2
        g = s12 / (s1 + eps)
        sv = s2 - g * s12
        flat1 = s1 < eps
        g[flat1], sv[flat1], s1[flat1] = 0, s2[flat1], 0
        flat2 = s2 < eps
        g[flat2], sv[flat2] = 0, 0
        negative = g < 0
        sv[negative], g[negative] = s2[negative], 0
        sv[sv <= eps] = eps
        num += np.sum(np.log10(1 + g * g * s1 / (sv + noise)))
        den += np.sum(np.log10(1 + s1 / noise))
    return 1.0 if math.isnan(num / den) else num / den


def edges(img):
    sx = convolve2d(img, np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]), mode="same")
    sy = convolve2d(img, np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]]), mode="same")
    angle = np.full(img.shape, math.pi / 2)
    angle[sx != 0] = np.arctan(sy[sx != 0] / sx[sx != 0])
    return np.sqrt(sx * sx + sy * sy), angle


def qabf(a, b, f):
    (ga, aa), (gb, ab), (gf, af) = edges(a), edges(b), edges(f)

    def q(g, angle):
        ratio = np.zeros_like(g)
        ratio[g > gf] = gf[g > gf] / g[g > gf]
        ratio[g == gf] = gf[g == gf]
        ratio[g < gf] = g[g < gf] / gf[g < gf]
        orientation = 1 - np.abs(angle - af) / (math.pi / 2)
        return 0.9994 / (1 + np.exp(-15 * (ratio - 0.5))) * 0.9879 / (1 + np.exp(-22 * (orientation - 0.8)))

    return np.sum(q(ga, aa) * ga + q(gb, ab) * gb) / np.sum(ga + gb)


def independent(a, b, f):
    a, b, f = (np.asarray(x, dtype=np.float32) for x in (a, b, f))
    ssim = structural_similarity(f, a, data_range=2) + structural_similarity(f, b, data_range=2)
    f64 = f.astype(np.float64)
    return {
        "EN": entropy_bits(f), "SD": np.std(f64),
        "SF": np.sqrt(np.mean(np.diff(f64, axis=1) ** 2) + np.mean(np.diff(f64, axis=0) ** 2)),
        "MI": mi_nats(f, a) + mi_nats(f, b), "SCD": corr(a, f - b) + corr(b, f - a),
        "VIF": vifp(a, f) + vifp(b, f), "Qabf": qabf(a.astype(np.float64), b.astype(np.float64), f64),
        "SSIM": ssim,
    }


# ------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("folder,name", [("CT-MRI", "2004.png"), ("PET-MRI", "25015.png"), ("SPECT-MRI", "11005.png")])
def test_protocol_metrics_agree_with_the_formulas_on_real_pairs(harvard_dir, folder, name):
    first, second = folder.split("-")
    a, b = read_grey(harvard_dir / folder / first / name), read_grey(harvard_dir / folder / second / name)
    for fused in (np.maximum(a, b), np.round(0.5 * (a + b))):
        ours = cddfuse.score(a, b, fused)
        theirs = independent(a, b, fused)
        assert list(ours) == NAMES
        for metric in NAMES:
            assert abs(ours[metric] - theirs[metric]) < TWO_DECIMALS, (folder, metric, ours[metric], theirs[metric])


def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def test_evaluate_protocol_cddfuse_scores_the_saved_images_as_the_scorer_reads_them(harvard_dir, tmp_path):
    # PET-MRI: a colour source and a colour (RGB) fused image, so OpenCV's BGR -> grey matters on both sides.
    out = tmp_path / "out"
    code, _, stderr = run_cli(["evaluate", harvard_dir, "--protocol", "cddfuse", "--methods", "average,max",
                               "--folders", "PET-MRI,CT-MRI", "--limit", 1, "--save-fused", "--out", out, "-q"])
    assert code == 0, stderr
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and list(rows[0])[4:] == NAMES
    for row in rows:
        folder, name = row["pair"], row["image"]
        first, second = folder.split("-")
        fused_png = out / "fused" / row["method"] / folder / name
        theirs = independent(read_grey(harvard_dir / folder / first / name),
                             read_grey(harvard_dir / folder / second / name), read_grey(fused_png))
        for metric in NAMES:
            assert abs(float(row[metric]) - theirs[metric]) < TWO_DECIMALS, (row["method"], folder, metric)
    report = (out / "results.md").read_text()
    assert "CDDFuse protocol" in report and "--protocol cddfuse" in report


def test_protocol_metric_names_and_bad_input(harvard_dir, tmp_path):
    code, _, stderr = run_cli(["evaluate", harvard_dir, "--protocol", "cddfuse", "--metrics", "VIF,FMI_pixel",
                               "--out", tmp_path / "out", "-q"])
    assert code == 2 and "Unknown metric(s) 'FMI_pixel' for the cddfuse protocol" in stderr
    assert not (tmp_path / "out").exists()
    grey = np.zeros((64, 64))
    with pytest.raises(InputError, match="0-255 grey levels"):
        cddfuse.score(grey, grey, grey + 300)
    with pytest.raises(InputError, match="8-bit images"):
        cddfuse.cddfuse_grey(np.zeros((8, 8), dtype=np.float32))
