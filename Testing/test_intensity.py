"""Intensity presets: parsing, windows, percentiles, auto guesses, non-finite values."""
from __future__ import annotations

import numpy as np
import pytest

from MedFusionLib.errors import InputError
from MedFusionLib.intensity import CT_WINDOWS, apply_window, choose_window, parse_preset


@pytest.mark.parametrize("text,low,high", [
    ("ct:brain", 0.0, 80.0),
    ("ct:soft_tissue", -150.0, 250.0),
    ("ct:bone", -500.0, 1300.0),
    ("ct", -500.0, 1300.0),  # plain ct is the bone window
    ("ct:wide", -1100.0, 1900.0),
    ("manual:10:20", 10.0, 20.0),
    ("manual 10 20", 10.0, 20.0),
])
def test_windows(text, low, high):
    assert parse_preset(text).window == (low, high)


def test_ct_window_maps_hounsfield_units():
    hu = np.array([-1000.0, 0.0, 40.0, 80.0, 3000.0], dtype=np.float32)
    out, n_bad = apply_window(hu, choose_window(hu, "ct:brain"))
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 1.0, 1.0])
    assert n_bad == 0 and out.dtype == np.float32


def test_percentiles_match_numpy():
    rng = np.random.default_rng(1)
    values = rng.gamma(2.0, 100.0, size=(40, 50, 60)).astype(np.float32)
    window = choose_window(values, "mr")
    lo, hi = np.percentile(values, [0.5, 99.5])
    assert window.low == pytest.approx(lo) and window.high == pytest.approx(hi)
    window = choose_window(values, "mr:2:98")
    assert (window.low, window.high) == pytest.approx(tuple(np.percentile(values, [2, 98])))
    pet = choose_window(values, "pet")
    assert pet.low == pytest.approx(values.min()) and pet.high == pytest.approx(np.percentile(values, 99.9))


def test_auto_guesses():
    eight_bit = np.arange(0, 200, dtype=np.uint8).reshape(10, 20)
    assert (choose_window(eight_bit, "auto", eight_bit=True).low, choose_window(eight_bit, "auto", eight_bit=True).high) == (0, 255)
    ct = np.linspace(-1024, 1500, 1000, dtype=np.float32)
    w = choose_window(ct, "auto")
    assert (w.low, w.high) == (-500.0, 1300.0) and "CT" in w.how
    mr = np.linspace(0, 900, 1000, dtype=np.float32)
    w = choose_window(mr, "auto")
    assert w.low == pytest.approx(np.percentile(mr, 0.5)) and "percentiles" in w.how


def test_non_finite_values_are_background_and_counted():
    values = np.array([np.nan, 0.0, 50.0, np.inf, 100.0, -np.inf], dtype=np.float32)
    before = values.copy()
    window = choose_window(values, "manual:0:100")
    out, n_bad = apply_window(values, window)
    assert n_bad == 3
    np.testing.assert_array_equal(out, [0.0, 0.0, 0.5, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(values, before)  # never in place
    # Percentiles ignore non-finite voxels.
    assert choose_window(values, "mr:0:100").high == 100.0


@pytest.mark.parametrize("values,message", [
    (np.full((3, 4), np.nan, np.float32), "no finite values"),
    (np.full((3, 4), 7.0, np.float32), "is constant"),
])
def test_unusable_volumes(values, message):
    with pytest.raises(InputError, match=message):
        choose_window(values, "mr", name="X")


@pytest.mark.parametrize("text", ["ct:liver", "mri", "manual:5", "manual:9:1", "mr:50:10", "pet:1:2:3", "ct:x:y"])
def test_unknown_or_malformed_presets(text):
    with pytest.raises(InputError):
        parse_preset(text)


def test_every_named_window_parses():
    for name, (level, width) in CT_WINDOWS.items():
        assert parse_preset(f"ct:{name}").window == (level - width / 2, level + width / 2)
