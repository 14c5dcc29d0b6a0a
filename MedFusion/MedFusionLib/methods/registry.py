"""The registry of fusion methods: one table, looked up by name, imported lazily.

The contract every method follows (classic rules and networks alike):

* ``build(device, **options)`` returns a callable ``fuse(a, b) -> fused``.
* ``a`` and ``b`` are float32 tensors of shape (N, 1, H, W) with values in [0, 1], already on ``device``;
  ``a`` is the reference (anatomical) source. A method must not modify them in place.
* ``fused`` is a float32 tensor of shape (N, 1, H, W) on the same device, values in [0, 1].
* Deterministic: the same inputs on the CPU give bit-identical outputs.
* Networks load their shipped weights inside ``build`` (offline, ``weights_only=True``, sha256-checked).

The table itself lives in ``methods/__init__.py`` so that listing methods never imports torch models.
"""
from __future__ import annotations

import ast
import importlib
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Tuple

from ..errors import InputError

FuseFn = Callable[[Any, Any], Any]


@dataclass(frozen=True)
class MethodInfo:
    name: str  # registry key: CLI --method, Python API, Slicer combo box
    title: str  # display name, e.g. "MFEnet"
    kind: str  # "classic" or "network"
    summary: str  # one line: what it does
    reference: str  # the paper it implements (for --help, docstrings, tooltips)
    module: str  # module under MedFusionLib.methods holding the factory
    factory: str = "build"
    # option name -> (default value, one-line help); options are passed to the factory as keywords
    options: Dict[str, Tuple[Any, str]] = field(default_factory=dict)
    # Reduced precisions ("bf16", "fp16") in which this network stays within the accuracy guard of its float32
    # output (acceleration.py; checked by Testing/test_acceleration.py); precision "auto" uses only these.
    reduced_precision: Tuple[str, ...] = ()

    def check_options(self, options: Dict[str, Any]) -> None:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            valid = ", ".join(sorted(self.options)) or "none"
            raise InputError(f"Method '{self.name}' has no option {', '.join(map(repr, unknown))}; "
                             f"its options are: {valid}.")
        for option, value in options.items():
            _check_option_type(self.name, option, value, self.options[option][0])

    def build(self, device, **options) -> FuseFn:
        self.check_options(options)
        module = importlib.import_module(f"{__package__}.{self.module}")
        return getattr(module, self.factory)(device, **options)


def _check_option_type(method: str, option: str, value, default) -> None:
    """An option's value has the type of its default (a whole number, a finite number, a word); the CLI, the
    Python API and a saved Slicer parameter node all pass through here."""
    if isinstance(default, bool):
        ok, wanted = isinstance(value, bool), "True or False"
    elif isinstance(default, int):
        ok, wanted = isinstance(value, int) and not isinstance(value, bool), "a whole number"
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        wanted = "a finite number"
    elif isinstance(default, str):
        ok, wanted = isinstance(value, str), "a name"
    else:
        return
    if not ok:
        raise InputError(f"Option '{option}' of method '{method}' must be {wanted} (default {default!r}), "
                         f"not {value!r:.40}.")


class Registry:
    def __init__(self, infos):
        self._infos = {info.name: info for info in infos}

    def names(self):
        return list(self._infos)

    def infos(self):
        return list(self._infos.values())

    def get(self, name: str) -> MethodInfo:
        key = (name or "").strip().lower()
        if key not in self._infos:
            raise InputError(f"Unknown fusion method '{name}'; choose one of: {', '.join(self._infos)}.")
        return self._infos[key]


def parse_option(text: str) -> Tuple[str, Any]:
    """'levels=5' -> ('levels', 5): values are Python literals where they parse, plain words otherwise."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise InputError(f"Method option '{text}' must look like KEY=VALUE.")
    try:
        parsed = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        parsed = value.strip()  # a plain word such as a wavelet name
    return key.strip(), parsed


_SPEC = re.compile(r"^\s*([A-Za-z0-9_]+)\s*(?:\[(.*)\])?\s*$")


def parse_method_spec(spec: str, registry: "Registry") -> Tuple[str, Dict[str, Any]]:
    """'mfenet[rule=add,edge_weight=0]' -> ('mfenet', {'rule': 'add', 'edge_weight': 0}), options checked."""
    match = _SPEC.match(spec or "")
    if not match:
        raise InputError(f"Method '{spec}' must look like NAME or NAME[KEY=VALUE,...].")
    info = registry.get(match.group(1))
    options = dict(parse_option(item) for item in (match.group(2) or "").split(",") if item.strip())
    info.check_options(options)
    return info.name, options
