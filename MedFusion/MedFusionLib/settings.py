"""One set of fusion settings, validated once at each front door (Python API, CLI, Slicer logic, batch rows,
evaluation) into the frozen object the engine takes.

``FusionSettings.create(**keywords)`` takes the keywords of :func:`MedFusionLib.engine.fuse_volumes` (except
the images and the progress / cancel callbacks) and either raises one :class:`InputError` sentence or returns
settings whose every field is checked and normalised: the method is its registry name and its options are
checked against their declarations (methods/base.py), the presets parse, the precision, colour mode, edge
thresholds and detail are in range. Nothing downstream checks them again.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Tuple

from .errors import InputError

# The edge overlay's detail (edge_overlay.py): fewer (0) or more (1) edges; the Slicer slider reads these too.
EDGE_DETAIL_RANGE, EDGE_DETAIL_DEFAULT = (0.0, 1.0), 0.5


def validate_edge_detail(detail) -> float:
    if detail is None:
        return EDGE_DETAIL_DEFAULT
    try:
        value = float(detail)
    except (TypeError, ValueError):
        raise InputError(f"Edge detail must be a number between 0 and 1, not {detail!r}.") from None
    if not (EDGE_DETAIL_RANGE[0] <= value <= EDGE_DETAIL_RANGE[1]):
        raise InputError(f"Edge detail must be between 0 (fewest edges) and 1 (most), not {value:g}.")
    return value


def validate_edge_thresholds(thresholds) -> Optional[Tuple[float, float]]:
    """Fixed edge thresholds (low, high), normalised intensity per mm, or None (chosen from the detail)."""
    if thresholds is None:
        return None
    try:
        low, high = (float(t) for t in thresholds)
    except (TypeError, ValueError):
        raise InputError("Edge thresholds must be two numbers: LOW HIGH.") from None
    if not (math.isfinite(low) and math.isfinite(high) and 0 <= low <= high):
        raise InputError(f"Edge thresholds must satisfy 0 <= LOW <= HIGH, not {low:g} and {high:g}.")
    return low, high


@dataclass(frozen=True)
class FusionSettings:
    method: str = "average"
    method_options: Mapping[str, Any] = field(default_factory=dict)
    axis: str = "axial"
    preset_a: Any = "auto"  # a preset text (intensity.py) or a Preset; created settings hold the Preset
    preset_b: Any = "auto"
    colormap_a: Any = None  # a matplotlib name or an (N, 3) table colouring a scalar functional source
    colormap_b: Any = None
    colour_mode: str = "auto"
    device: str = "auto"
    batch_size: Optional[int] = None  # None: the device's default (engine.DEFAULT_BATCH)
    precision: str = "auto"
    compile: bool = False
    edges: bool = True
    edge_thresholds: Optional[Tuple[float, float]] = None
    edge_detail: Optional[float] = None
    check_registration: bool = True
    crop_to_anatomy: bool = True  # run the method only where either source has data (anatomy_crop.py)
    return_sources: bool = False
    name_a: str = "A"
    name_b: str = "B"

    def for_method(self, method: str, options: Optional[Mapping[str, Any]] = None) -> "FusionSettings":
        """These checked settings with another method and its options (checked against its declarations)."""
        from .methods import REGISTRY

        info = REGISTRY.get(method)
        return dataclasses.replace(self, method=info.name, method_options=info.check_options(dict(options or {})))

    @classmethod
    def create(cls, **keywords) -> "FusionSettings":
        """Checked, normalised settings from ``fuse_volumes``' keywords (see the module docstring)."""
        from .acceleration import PRECISIONS
        from .api_checks import check_settings_types
        from .functional_colour import COLOUR_MODES
        from .geometry import check_axis
        from .intensity import parse_preset
        from .methods import REGISTRY

        unknown = sorted(set(keywords) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise InputError(f"fuse_volumes has no setting {', '.join(map(repr, unknown))}.")
        raw = dataclasses.replace(cls(), **keywords)
        check_settings_types(raw)
        info = REGISTRY.get(raw.method)
        precision = (raw.precision or "auto").strip().lower()
        if precision not in PRECISIONS:
            raise InputError(f"Unknown precision '{raw.precision}'; choose one of: {', '.join(PRECISIONS)}.")
        colour_mode = (raw.colour_mode or "auto").strip().lower()
        if colour_mode not in COLOUR_MODES:
            raise InputError(f"Unknown colour mode '{raw.colour_mode}'; choose one of: {', '.join(COLOUR_MODES)}.")
        if raw.batch_size is not None and raw.batch_size < 1:
            raise InputError(f"Batch size must be at least 1, not {raw.batch_size}.")
        return dataclasses.replace(
            raw, method=info.name, method_options=info.check_options(dict(raw.method_options or {})),
            preset_a=parse_preset(raw.preset_a), preset_b=parse_preset(raw.preset_b),  # parsed once, here
            axis=check_axis(raw.axis), precision=precision, colour_mode=colour_mode,
            batch_size=None if raw.batch_size is None else int(raw.batch_size),
            edge_thresholds=validate_edge_thresholds(raw.edge_thresholds),
            edge_detail=validate_edge_detail(raw.edge_detail), crop_to_anatomy=bool(raw.crop_to_anatomy))
