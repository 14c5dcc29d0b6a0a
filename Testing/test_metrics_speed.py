"""The fast metrics (issue 19) give the numbers of the implementation they replaced.

``metrics_reference`` is a frozen copy of MedFusionLib.metrics from before the rewrite (the 81-cell FMI,
every metric recomputing its sources). Here both score real Harvard pairs, fused as the harness saves them
(8-bit), with several fusion rules, through one SourcePair per pair: so the cached source derivations are
reused across "methods", as in the evaluation runner.

Tolerance: 1e-9 relative (1e-12 absolute near 0). FMI now sums the joint entropy in closed form plus a
staircase correction instead of over all 81 cells, so its per-window values differ in the last few bits
(< 1e-10 measured); every other metric runs the same floating-point operations as before.
"""
import numpy as np
import pytest

import metrics_reference
from conftest import harvard_pair
from MedFusionLib.errors import InputError
from MedFusionLib.metrics import METRICS, PREPARED_METRICS, SourcePair, evaluate_all
from MedFusionLib.metrics.fmi import WindowFeatures, per_window_nfmi

PAIRS = [("CT-MRI", "2004.png"), ("PET-MRI", "25015.png"), ("SPECT-MRI", "11005.png")]
RELATIVE, ABSOLUTE = 1e-9, 1e-12


def saved_8bit(image):
    return np.rint(np.clip(image, 0.0, 1.0) * 255.0) / 255.0


def fusion_rules(a, b):
    """Fused images of different character: blend, max (many windows identical to a source), noisy blend."""
    rng = np.random.default_rng(19)
    return {
        "average": saved_8bit(0.5 * (a + b)),
        "max": saved_8bit(np.maximum(a, b)),
        "noisy": saved_8bit(0.7 * a + 0.3 * b + rng.normal(0.0, 0.02, a.shape)),
    }


@pytest.mark.parametrize("folder,name", PAIRS)
def test_every_metric_equals_the_frozen_reference_on_real_pairs(folder, name):
    a, b = harvard_pair(folder, name)
    sources = SourcePair(a, b)
    for rule, fused in fusion_rules(a, b).items():
        fast = sources.score(fused, list(METRICS))
        for metric, spec in metrics_reference.METRICS.items():
            expected = spec.function(a, b, fused, data_range=1.0)
            assert fast[metric] == pytest.approx(expected, rel=RELATIVE, abs=ABSOLUTE), (folder, rule, metric)


def test_public_functions_and_evaluate_all_equal_the_reference():
    a, b = harvard_pair("CT-MRI", "2004.png")
    fused = fusion_rules(a, b)["noisy"]
    expected = {m: s.function(a, b, fused, data_range=1.0) for m, s in metrics_reference.METRICS.items()}
    for metric, spec in METRICS.items():
        assert spec.function(a, b, fused, data_range=1.0) == pytest.approx(expected[metric], rel=RELATIVE,
                                                                             abs=ABSOLUTE), metric
    assert evaluate_all(a, b, fused) == pytest.approx(expected, rel=RELATIVE, abs=ABSOLUTE)


def test_fmi_per_window_values_equal_the_reference_loop():
    # Window by window, both bounds (positive and negative pdf correlations), flat and identical patches.
    a, b = harvard_pair("PET-MRI", "25015.png")
    fused = fusion_rules(a, b)["noisy"] * 255.0
    for feature in ("none", "gradient"):
        for source in (a.astype(np.float64) * 255.0, b.astype(np.float64) * 255.0):  # float64, as prepare() gives
            src, fus = WindowFeatures(source, feature, 3), WindowFeatures(fused, feature, 3)
            reference = metrics_reference.information._per_window_fmi(
                metrics_reference.information._window_rows(metrics_reference.information._feature(source, feature), 3),
                metrics_reference.information._window_rows(metrics_reference.information._feature(fused, feature), 3))
            fast = per_window_nfmi(src, fus)
            num = (src.dev * fus.dev).sum(axis=0)
            assert (num < 0).sum() > 1000 and (num > 0).sum() > 1000  # both bounds are exercised
            assert np.abs(fast - reference).max() < 1e-10


def test_cached_sources_give_the_same_scores_in_any_order():
    a, b = harvard_pair("SPECT-MRI", "11005.png")
    rules = fusion_rules(a, b)
    shared = SourcePair(a, b)
    first = {rule: shared.score(fused, list(METRICS)) for rule, fused in rules.items()}
    again = {rule: shared.score(rules[rule], list(METRICS)) for rule in reversed(list(rules))}
    fresh = {rule: SourcePair(a, b).score(fused, list(METRICS)) for rule, fused in rules.items()}
    assert first == again == fresh  # exactly: the cache only skips recomputation
    assert np.array_equal(a, harvard_pair("SPECT-MRI", "11005.png")[0])  # inputs untouched


def test_prepared_table_covers_the_registry_and_rejects_bad_input():
    assert list(PREPARED_METRICS) == list(METRICS)
    a, b = harvard_pair("CT-MRI", "2004.png")
    sources = SourcePair(a, b)
    with pytest.raises(InputError, match="same shape"):
        sources.score(a[:100], ["SD"])
    with pytest.raises(InputError, match="Unknown metric"):
        sources.score(a, ["SL"])
    with pytest.raises(InputError, match="at least 41x41"):
        SourcePair(a[:30, :30], b[:30, :30]).score(a[:30, :30], ["SD", "VIFF"])
