"""The Slicer logic's keywords (camelCase, Slicer's convention) -> the one checked FusionSettings.

The keywords are not declared here: a fusion setting's keyword is its FusionSettings field in camelCase
(``preset_b`` -> ``presetB``, ``edges``, ``batchSize``), and a method option's keyword is its control's parameter
name (controls.py: ``fusionRule``, ``edgeStrength``, ``eemWeight``, ...), from the registry's declarations. A
keyword left out takes the FusionSettings default; a method option reaches only the methods that declare it.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional

from ..errors import InputError
from ..methods import REGISTRY
from ..settings import FusionSettings
from .controls import camel_case, control_specs, method_options

# Set by the logic from the nodes (their names, B's colour table), or not used by it (the engine's sources).
FROM_NODES = ("name_a", "name_b", "colormap_a", "colormap_b", "return_sources")
SETTING_KEYWORDS: Dict[str, str] = {camel_case(f.name): f.name for f in dataclasses.fields(FusionSettings)
                                    if f.name not in FROM_NODES}
# prepare's other keywords: no method option may take these names.
LOGIC_KEYWORDS = ("volumeA", "volumeB", "colourB", "outputVolume", "outputEdges", "progress", "cancel",
                  "stallTimeout")
OPTION_CONTROLS = control_specs(REGISTRY.infos(), reserved=(*SETTING_KEYWORDS, *LOGIC_KEYWORDS))
KEYWORDS = (*SETTING_KEYWORDS, *(spec.parameter for spec in OPTION_CONTROLS))


def setting_default(field: str) -> Any:
    """The default of a FusionSettings field, as declared there."""
    return next(f for f in dataclasses.fields(FusionSettings) if f.name == field).default


def settings_from_keywords(method: str, keywords: Dict[str, Any], name_a: str = "A", name_b: str = "B",
                           colormap_b: Optional[Any] = None) -> FusionSettings:
    """FusionSettings from the logic's keywords, checked once (FusionSettings.create); ``methodOptions`` win
    over the option controls' values."""
    unknown = sorted(set(keywords) - set(KEYWORDS))
    if unknown:
        raise InputError(f"MedFusionLogic has no option {', '.join(map(repr, unknown))}; its options are: "
                         f"{', '.join(sorted(KEYWORDS))}.")
    info = REGISTRY.get(method)
    settings = {SETTING_KEYWORDS[key]: value for key, value in keywords.items() if key in SETTING_KEYWORDS}
    extra = settings.pop("method_options", None)
    options = method_options(OPTION_CONTROLS, info.name, keywords)
    if isinstance(extra, dict):
        options.update(extra)
    elif extra is not None:
        options = extra  # not a dict: FusionSettings.create says so
    settings.pop("method", None)
    return FusionSettings.create(method=info.name, method_options=options, name_a=name_a, name_b=name_b,
                                 colormap_b=colormap_b, **settings)
