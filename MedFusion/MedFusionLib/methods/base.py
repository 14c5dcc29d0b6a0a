"""The method protocol in one place: a typed option declaration and the loaded method object.

Every registered method, classic rule or network, is loaded once into a :class:`FusionMethod`:

* called on float32 tensors ``(N, 1, H, W)`` in [0, 1] on its device (``a`` the reference), it returns a float32
  tensor of the same shape in [0, 1], under ``torch.inference_mode``, in the precision of its plan
  (acceleration.py: autocast, channels-last for a network's weights and inputs, optional torch.compile);
* output that is not finite (NaN or infinity) is refused with :class:`NonFiniteOutput` before clamping, because
  the clamp would hide NaN as is and infinity as 0 or 1;
* ``.to(device)`` moves it (a network's weights move, nothing is reloaded), re-planning the precision for the new
  device; the engine's out-of-memory fallback uses this.

Options are declared once, as :class:`Option` values on the registry entry; the CLI's help and parsing, API
validation, the Slicer parameters and the evaluation's method specs all read that declaration.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple

from ..errors import InputError, MethodOutputError


class NonFiniteOutput(MethodOutputError):
    """The method produced NaN or infinity; the engine adds which slices."""


@dataclass(frozen=True)
class Option:
    """One method option: its default (whose type is the option's type), help, and allowed values."""
    default: Any
    help: str
    choices: Tuple[Any, ...] = ()  # allowed values, if a closed set
    minimum: Optional[float] = None  # inclusive lower bound for numbers
    maximum: Optional[float] = None  # inclusive upper bound for numbers
    # Where the Slicer slider ends for a number without a maximum (larger values stay open to the CLI and API).
    slider_maximum: Optional[float] = None

    @property
    def type(self) -> type:
        return type(self.default)

    def describe(self) -> str:
        """The type and range for --help and tooltips, e.g. 'number >= 0' or 'one of max, add'."""
        if self.choices:
            return "one of " + ", ".join(map(str, self.choices))
        kind = {bool: "true/false", int: "whole number", float: "number", str: "name"}.get(self.type, "value")
        if self.minimum is not None and self.maximum is not None:
            return f"{kind} from {self.minimum:g} to {self.maximum:g}"
        if self.maximum is not None:
            return f"{kind} <= {self.maximum:g}"
        return kind if self.minimum is None else f"{kind} >= {self.minimum:g}"

    @staticmethod
    def parse(text: str) -> Any:
        """A command-line or method-spec word as a value: a whole number, a number, true/false, else the word
        itself; ``check`` then holds it to the declared type (so 'wavelet=5' is refused as not a name)."""
        text = text.strip()
        for convert in (int, float):
            try:
                return convert(text)
            except ValueError:
                pass
        return {"true": True, "false": False}.get(text.lower(), text)

    def check(self, method: str, name: str, value: Any) -> Any:
        """``value`` checked against the declaration; returns it, a word of a closed set lower-cased."""
        if isinstance(self.default, bool):
            ok, wanted = isinstance(value, bool), "True or False"
        elif isinstance(self.default, int):
            ok, wanted = isinstance(value, int) and not isinstance(value, bool), "a whole number"
        elif isinstance(self.default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            wanted = "a finite number"
        else:
            ok, wanted = isinstance(value, str), "a name"
        if not ok:
            raise InputError(f"Option '{name}' of method '{method}' must be {wanted} (default {self.default!r}), "
                             f"not {value!r:.40}.")
        if isinstance(value, str) and self.choices:
            value = value.strip().lower()
        if self.choices and value not in self.choices:
            raise InputError(f"Option '{name}' of method '{method}' has no value {value!r:.40}; choose one of: "
                             f"{', '.join(map(str, self.choices))}.")
        if self.minimum is not None and value < self.minimum:
            raise InputError(f"Option '{name}' of method '{method}' must be at least {self.minimum:g}, not {value!r}.")
        if self.maximum is not None and value > self.maximum:
            raise InputError(f"Option '{name}' of method '{method}' must be at most {self.maximum:g}, not {value!r}.")
        return value  # as given: a whole number stays one (method labels such as edge_weight=1 keep their form)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def with_shipped_weights(model, name: str, device, weights_dir=None):
    """``model`` holding the shipped weights of registry entry ``name`` (sha256-checked, ``weights_only=True``;
    weights_store.py), in eval mode on ``device``."""
    from ..weights_store import load_state_dict

    model.load_state_dict(load_state_dict(name, weights_dir=weights_dir))
    return model.to(device).eval()


class FusionMethod:
    """A loaded method (see the module docstring). ``model`` is the network (None for a classic rule).

    As built it runs as written (float32, eager: the reference output tests compare with); ``accelerated``
    gives it the engine's precision plan, channels-last and optional compile.
    """

    def __init__(self, name: str, fuse: Callable, model=None, device="cpu", rebuild: Optional[Callable] = None):
        import torch

        self.name, self.model, self.device = name, model, torch.device(device)
        self._fuse, self._rebuild = fuse, rebuild  # rebuild(device): a classic rule made for another device
        self._precision, self._compile, self._reduced = None, False, ()
        self._plan()

    def accelerated(self, precision: str = "auto", compile: bool = False, reduced_precision=()) -> "FusionMethod":
        """Run under the precision plan for ``precision`` on this device (acceleration.py) from now on."""
        self._precision, self._compile, self._reduced = precision, compile, tuple(reduced_precision)
        self._plan()
        return self

    def to(self, device) -> "FusionMethod":
        """Run on ``device`` from now on: a network's weights move there, the precision is planned again."""
        import torch

        device = torch.device(device)
        if self.model is not None:
            self.model.to(device)
        elif self._rebuild is not None and device != self.device:
            self._fuse = self._rebuild(device)
        self.device = device
        self._plan()
        return self

    def _plan(self) -> None:
        from ..acceleration import Plan, accelerate, plan_precision

        if self._precision is None:
            self.plan, self._run = Plan("fp32", "as written"), self._fuse
            return
        network = self.model is not None
        self.plan = plan_precision(self._precision, self.device, "network" if network else "classic", self._reduced)
        # A network runs accelerated (precision, channels-last, compile); a classic rule runs as written.
        self._run = (accelerate(self._fuse, self.plan, self.device, self._compile, model=self.model) if network
                     else self._fuse)

    @property
    def precision(self) -> str:
        return self.plan.precision

    def __call__(self, a, b):
        import torch

        with torch.inference_mode():
            fused = self._run(a, b).float()
            if not bool(torch.isfinite(fused).all()):
                raise NonFiniteOutput(f"Method '{self.name}' produced values that are not finite (NaN or infinity)")
            return fused.clamp_(0.0, 1.0)
