"""The registry of fusion methods: one table, looked up by name, imported lazily.

The protocol every method follows (classic rules and networks alike) is in base.py: a registry entry declares
the method's typed options (``Option``), and ``load(device, options, precision, compile)`` returns the loaded
:class:`~.base.FusionMethod` the engine calls on (N, 1, H, W) float32 batches in [0, 1] and moves between
devices. A method's module provides a factory ``build(device, **options)`` returning its fuse callable (a
classic rule) or a ``FusionMethod`` holding the network (loaded once: shipped weights, offline,
``weights_only=True``, sha256-checked, eval mode). Fused output is deterministic on the CPU and never modifies
its inputs. A network's training lives outside this package (MedFusionTraining), keyed by the same name.

The table itself lives in ``methods/__init__.py`` so that listing methods never imports torch models.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from ..errors import InputError
from .base import FusionMethod, Option


# The families of fusion methods (after the survey seed, ../shared/METHODS.md), in listing order: key -> title.
FAMILIES = {
    "classic": "Classic rules",
    "cnn": "CNN",
    "gan": "GAN",
    "transformer": "Transformer",
    "unet": "U-Net",
    "deep-features": "Deep features",
}


@dataclass(frozen=True)
class MethodInfo:
    name: str  # registry key: CLI --method, Python API, Slicer combo box, weights manifest, training
    title: str  # display name, e.g. "MFEnet"
    kind: str  # "classic" or "network" (for listings; the engine treats both alike)
    summary: str  # one line: what it does
    reference: str  # the paper it implements (for --help, docstrings, tooltips)
    module: str  # module under MedFusionLib.methods holding the factory
    factory: str = "build"
    # the survey's family (a key of FAMILIES), for grouped listings: `medfusion methods`, the Slicer combo box
    family: str = "classic"
    # option name -> its typed declaration; options are passed to the factory as keywords
    options: Dict[str, Option] = field(default_factory=dict)
    # Reduced precisions ("bf16", "fp16", "int8") in which this network stays within the accuracy guard of its
    # float32 output (acceleration.py; checked by Testing/test_acceleration.py); precision "auto" uses only these.
    reduced_precision: Tuple[str, ...] = ()
    # Receptive-field radius in pixels (how far an input pixel can change an output pixel), declared only for a
    # method whose output is local; None (slice-wide statistics, size-dependent pyramids, or not worked out):
    # cropping to the anatomy only skips empty slices (anatomy_crop.py).
    crop_margin: Optional[int] = None
    # Options whose non-zero value makes the output slice-wide after all (e.g. MFEnet's Canny edges).
    crop_margin_unless: Tuple[str, ...] = ()

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"method {self.name!r}: family {self.family!r} is not one of {', '.join(FAMILIES)}")

    def check_options(self, options: Dict[str, Any]) -> Dict[str, Any]:
        """``options`` checked against the declarations; returns them normalised (the only check there is)."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            valid = ", ".join(sorted(self.options)) or "none"
            raise InputError(f"Method '{self.name}' has no option {', '.join(map(repr, unknown))}; "
                             f"its options are: {valid}.")
        return {key: self.options[key].check(self.name, key, value) for key, value in options.items()}

    def margin(self, options: Optional[Dict[str, Any]] = None) -> Optional[int]:
        """The receptive-field margin for a run with ``options``, or None when that output is not local."""
        chosen = {**self.defaults(), **(options or {})}
        if any(chosen.get(key) for key in self.crop_margin_unless):
            return None
        return self.crop_margin

    def defaults(self) -> Dict[str, Any]:
        return {key: option.default for key, option in self.options.items()}

    def build(self, device, **options) -> FusionMethod:
        """The method as written (float32, eager) on ``device``; ``load`` is how the engine runs it."""
        import torch

        options = self.check_options(options)
        factory = getattr(importlib.import_module(f"{__package__}.{self.module}"), self.factory)
        made = factory(device, **options)
        if isinstance(made, FusionMethod):
            return made
        return FusionMethod(self.name, made, device=torch.device(device), rebuild=lambda dev: factory(dev, **options))

    def load(self, device, options: Optional[Dict[str, Any]] = None, precision: str = "auto",
             compile: bool = False) -> FusionMethod:
        """The method on ``device`` under the precision plan for ``precision`` (acceleration.py)."""
        return self.build(device, **(options or {})).accelerated(precision, compile, self.reduced_precision)


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


def options_help(registry: "Registry") -> str:
    """Every method's options with their defaults, for --option's help: 'dwt: wavelet=db2, levels=3; ...'."""
    return "; ".join(f"{info.name}: " + ", ".join(f"{key}={option.default}" for key, option in info.options.items())
                     for info in registry.infos() if info.options)


def split_option(text: str) -> Tuple[str, str]:
    """'levels=5' -> ('levels', '5')."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise InputError(f"Method option '{text}' must look like KEY=VALUE.")
    return key.strip(), value.strip()


def parse_options(info: MethodInfo, texts) -> Dict[str, Any]:
    """['levels=5', 'wavelet=haar'] -> {'levels': 5, 'wavelet': 'haar'}: each value read as a number or a word, then
    checked against its declared type and range (CLI --option, batch rows and evaluation specs all parse here)."""
    raw = dict(split_option(text) for text in texts if text.strip())
    return info.check_options({key: Option.parse(value) for key, value in raw.items()})


_SPEC = re.compile(r"^\s*([A-Za-z0-9_]+)\s*(?:\[(.*)\])?\s*$")


def parse_method_spec(spec: str, registry: "Registry") -> Tuple[str, Dict[str, Any]]:
    """'mfenet[rule=add,edge_weight=0]' -> ('mfenet', {'rule': 'add', 'edge_weight': 0.0}), options checked."""
    match = _SPEC.match(spec or "")
    if not match:
        raise InputError(f"Method '{spec}' must look like NAME or NAME[KEY=VALUE,...].")
    info = registry.get(match.group(1))
    return info.name, parse_options(info, (match.group(2) or "").split(","))
