"""FusionSettings (settings.py): checked once at a front door, then taken by the engine as they are."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import SimpleITK as sitk

from MedFusionLib.engine import fuse, fuse_volumes
from MedFusionLib.errors import InputError
from MedFusionLib.intensity import Preset
from MedFusionLib.settings import FusionSettings


def test_create_checks_and_normalises_every_field():
    settings = FusionSettings.create(method=" MFEnet", method_options={"rule": "ADD", "edge_weight": 1},
                                     axis="Coronal ", precision="FP32", colour_mode="Overlay", preset_a="ct:brain",
                                     edge_thresholds=[0.1, 0.3])
    assert (settings.method, settings.axis, settings.precision, settings.colour_mode) == \
        ("mfenet", "coronal", "fp32", "overlay")
    assert settings.method_options == {"rule": "add", "edge_weight": 1}  # checked against the declaration
    assert isinstance(settings.preset_a, Preset) and settings.preset_a.kind == "ct"  # parsed once, here
    assert settings.edge_thresholds == (0.1, 0.3) and settings.edge_detail == 0.5
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.method = "average"  # type: ignore[misc]


@pytest.mark.parametrize("keywords,words", [
    (dict(method="nope"), "Unknown fusion method"),
    (dict(method="mfenet", method_options={"rule": "median"}), "choose one of"),
    (dict(method="laplacian", method_options={"levels": 0}), "at least 1"),
    (dict(axis="oblique"), "slicing axis"),
    (dict(precision="half"), "precision"),
    (dict(colour_mode="rainbow"), "colour mode"),
    (dict(preset_a="ct:liver"), "Unknown CT window"),
    (dict(batch_size=0), "at least 1"),
    (dict(batch_size=2.5), "whole number"),
    (dict(edge_detail=2), "Edge detail"),
    (dict(edge_thresholds=(3, 1)), "LOW <= HIGH"),
    (dict(edges="yes"), "True or False"),
    (dict(colormap="hot"), "no setting 'colormap'"),
])
def test_bad_settings_are_one_sentence(keywords, words):
    with pytest.raises(InputError, match=words):
        FusionSettings.create(**keywords)


def test_the_engine_takes_settings_as_fuse_volumes_makes_them(harvard_dir):
    a, b = (sitk.ReadImage(str(harvard_dir / "CT-MRI" / folder / "2004.png")) for folder in ("CT", "MRI"))
    keywords = dict(method="laplacian", method_options={"levels": 3}, device="cpu", edges=True)
    by_keywords = fuse_volumes(a, b, **keywords)
    by_settings = fuse(a, b, FusionSettings.create(**keywords))
    assert np.array_equal(sitk.GetArrayFromImage(by_keywords.fused), sitk.GetArrayFromImage(by_settings.fused))
    assert np.array_equal(sitk.GetArrayFromImage(by_keywords.edges), sitk.GetArrayFromImage(by_settings.edges))
    assert by_settings.method == "laplacian" and by_settings.precision == "fp32"
