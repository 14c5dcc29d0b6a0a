"""The Slicer controls of the method options, derived from the registry's ``Option`` declarations (no Qt).

Each declared option becomes one :class:`ControlSpec`: the parameter-node name it is stored under (camelCase, the
widget's convention), the kind of control (choices -> combo box, a number with both ends -> slider, another
number -> spin box, true/false -> check box, a word -> line edit), its range, default and tooltip, and the
methods that show it. MedFusion.py only turns these specs into Qt widgets, so a new network's options get their
controls from its registry entry, with no widget edit.

Methods declaring an option of the same name with the same declaration share one control (and one value); a
name declared differently by two methods (``levels``: Laplacian 4, DWT 3) gets one control per declaration: the
first in registry order keeps the plain name (``levels``), a later one is named after its method (``dwtLevels``),
so that adding a method never renames what a saved scene holds.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Tuple

from ..methods.base import Option

COMBO, SLIDER, SPIN, CHECKBOX, LINE_EDIT = "combo", "slider", "spin", "checkbox", "line edit"
# The parameter kind (parameters.py) that holds each control's value.
PARAMETER_KIND = {COMBO: "enum", SLIDER: "float", CHECKBOX: "bool", LINE_EDIT: "str"}

# Parameter names kept from the versions whose widget had only MFEnet's two controls (saved scenes hold them):
# (method, option) -> name.
LEGACY_NAMES = {("mfenet", "rule"): "fusionRule", ("mfenet", "edge_weight"): "edgeStrength"}
SPIN_LIMIT = 1_000_000  # a spin box needs ends: this one for an open end


def camel_case(name: str) -> str:
    """'edge_weight' -> 'edgeWeight' (the parameter node's convention)."""
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def label_of(name: str) -> str:
    """'eem_weight' -> 'Eem weight' (the control's label)."""
    words = name.replace("_", " ")
    return words[:1].upper() + words[1:]


@dataclass(frozen=True)
class ControlSpec:
    """One method-option control: what MedFusion.py builds, what the parameter node stores."""
    parameter: str  # parameter-node name (camelCase)
    option: str  # the option's name in the registry (snake_case)
    methods: Tuple[str, ...]  # registry names of the methods that declare it (the control shows for these)
    kind: str  # COMBO, SLIDER, SPIN, CHECKBOX or LINE_EDIT
    default: Any
    label: str
    tooltip: str
    choices: Tuple[Any, ...] = ()
    minimum: Optional[float] = None  # slider and spin box ends
    maximum: Optional[float] = None
    decimals: int = 0  # 0: a whole number
    step: float = 1.0

    @property
    def parameter_kind(self) -> str:
        if self.kind == SPIN:
            return "float" if self.decimals else "int"
        return PARAMETER_KIND[self.kind]

    @property
    def limits(self) -> Optional[Tuple[float, float]]:
        return None if self.minimum is None else (self.minimum, self.maximum)


def spec_for(parameter: str, option_name: str, option: Option, methods: Tuple[str, ...]) -> ControlSpec:
    """The control of one declaration (see the module docstring for the kinds)."""
    tooltip = f"{option.help[:1].upper()}{option.help[1:]} ({option.describe()}; default {option.default!r})."
    common = dict(parameter=parameter, option=option_name, methods=methods, default=option.default,
                  label=label_of(option_name), tooltip=tooltip)
    if isinstance(option.default, bool):
        return ControlSpec(kind=CHECKBOX, **common)
    if option.choices:
        return ControlSpec(kind=COMBO, choices=tuple(option.choices), **common)
    if isinstance(option.default, (int, float)):
        whole = isinstance(option.default, int)
        top = option.maximum if option.maximum is not None else option.slider_maximum
        low = -SPIN_LIMIT if option.minimum is None else float(option.minimum)
        if not whole and option.minimum is not None and top is not None:
            span = float(top) - low
            return ControlSpec(kind=SLIDER, minimum=low, maximum=float(top), decimals=2, step=span / 100, **common)
        return ControlSpec(kind=SPIN, minimum=low, maximum=float(SPIN_LIMIT if top is None else top),
                           decimals=0 if whole else 3, step=1.0 if whole else 0.1, **common)
    return ControlSpec(kind=LINE_EDIT, **common)


def control_specs(infos: Iterable, reserved: Iterable[str] = ()) -> Tuple[ControlSpec, ...]:
    """One spec per distinct option declaration of ``infos`` (registry entries), in registry order.

    ``reserved``: parameter names already taken (the parameter node's other fields, prepare's keywords); an
    option whose name would clash is named after its method instead (``dwtLevels``)."""
    groups: "OrderedDict[Tuple[str, Option], list]" = OrderedDict()
    for info in infos:
        for name, option in info.options.items():
            groups.setdefault((name, option), []).append(info.name)
    taken = set(reserved) | set(LEGACY_NAMES.values())
    specs = []
    for (name, option), methods in groups.items():
        legacy = next((LEGACY_NAMES[(m, name)] for m in methods if (m, name) in LEGACY_NAMES), None)
        parameter = legacy or camel_case(name)
        if legacy is None and parameter in taken:  # a later, different declaration of a name, or a setting's name
            parameter = camel_case(f"{methods[0]}_{name}")
        if legacy is None and parameter in taken:
            raise ValueError(f"method {methods[0]!r}: no free parameter name for its option {name!r}")
        taken.add(parameter)
        specs.append(spec_for(parameter, name, option, tuple(methods)))
    return tuple(specs)


def method_options(specs: Iterable[ControlSpec], method: str, values: dict) -> dict:
    """The options of ``method`` held by controls: parameter name -> value in ``values`` (None: not set) ->
    {option: value} for the controls that ``method`` shows; the others are left out (not an error)."""
    options = {}
    for spec in specs:
        value = values.get(spec.parameter)
        if value is None or method not in spec.methods:
            continue
        if isinstance(spec.default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)  # a slider at a whole number is still a number option
        options[spec.option] = value
    return options
