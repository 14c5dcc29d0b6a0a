"""evaluate() takes its fusion settings once: as a FusionSettings or as the keywords it declares
(preset_a, preset_b, device, batch_size, precision); both forms score the same on a real Harvard pair."""
from __future__ import annotations

import pytest

from MedFusionLib.errors import InputError
from MedFusionLib.evaluation import FUSION_KEYWORDS, evaluate
from MedFusionLib.settings import FusionSettings

RUN = dict(methods=["average", "laplacian"], metrics=["EN", "SF"], folders=["PET-MRI"], limit=1)


def _scores(evaluation):
    return [(r["pair"], r["method"], r["EN"], r["SF"]) for r in evaluation.rows]


def test_settings_object_and_keywords_score_the_same(harvard_dir, tmp_path):
    keywords = dict(preset_a="mr", preset_b="pet", device="cpu", batch_size=2, precision="fp32")
    assert set(keywords) == set(FUSION_KEYWORDS)
    by_keywords, _ = evaluate(tmp_path / "keywords", pairs_dir=harvard_dir, **RUN, **keywords)
    by_settings, _ = evaluate(tmp_path / "settings", pairs_dir=harvard_dir, **RUN,
                              settings=FusionSettings.create(**keywords))
    assert len(by_keywords.rows) == 2
    assert _scores(by_settings) == _scores(by_keywords)
    assert by_settings.settings["batch"] == by_keywords.settings["batch"] == 2
    assert by_settings.settings["preset_b"] == by_keywords.settings["preset_b"] != "auto"


def test_fusion_settings_are_checked_once_with_one_clear_error(harvard_dir, tmp_path):
    with pytest.raises(InputError, match="Batch size must be at least 1"):
        evaluate(tmp_path / "a", pairs_dir=harvard_dir, **RUN, batch_size=0)
    with pytest.raises(InputError, match="Unknown intensity preset"):
        evaluate(tmp_path / "b", pairs_dir=harvard_dir, **RUN, preset_a="bogus")
    with pytest.raises(TypeError, match="edges"):
        evaluate(tmp_path / "c", pairs_dir=harvard_dir, **RUN, edges=True)
    with pytest.raises(TypeError, match="either settings or the keywords"):
        evaluate(tmp_path / "d", pairs_dir=harvard_dir, **RUN, settings=FusionSettings.create(), device="cpu")
    assert not any((tmp_path / name).exists() for name in "abcd")  # nothing written before the settings pass


def test_methods_are_scored_in_float32_unless_asked(harvard_dir, tmp_path):
    # MFEnet's auto precision is int8 (faster, within the PSNR guard) but its output is not float32's: an
    # evaluation scores the method as written unless the caller asks for another precision.
    run = dict(methods=["mfenet"], metrics=["FMI_pixel", "SF"], folders=["PET-MRI"], limit=1, device="cpu")
    default, _ = evaluate(tmp_path / "default", pairs_dir=harvard_dir, **run)
    fp32, _ = evaluate(tmp_path / "fp32", pairs_dir=harvard_dir, **run, precision="fp32")
    int8, _ = evaluate(tmp_path / "int8", pairs_dir=harvard_dir, **run, precision="int8")
    scores = lambda ev: [(r["FMI_pixel"], r["SF"]) for r in ev.rows]  # noqa: E731
    assert scores(default) == scores(fp32) != scores(int8)
