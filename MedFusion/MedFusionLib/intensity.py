"""Map each input's intensities to [0, 1] before fusion: CT windows, robust percentiles, manual, auto.

Preset syntax (CLI ``--preset-a``, Python ``preset_a=``):

* ``ct`` or ``ct:<window>`` - a CT window in Hounsfield units; windows: brain (L40 W80), subdural (L75 W215),
  soft (soft tissue, L50 W400), bone (L400 W1800), lung (L-600 W1500), wide (L400 W3000).
  Plain ``ct`` is ``ct:bone``: in CT + MR fusion the CT contributes bone, which the other windows saturate.
* ``mr`` - robust percentiles 0.5-99.5 of the volume's finite voxels; ``mr:LO:HI`` sets the percentiles.
* ``pet`` - percentiles 0-99.9: hot spots are small, so a 99.5 cap would flatten exactly what matters.
* ``manual:LOW:HIGH`` (or ``manual LOW HIGH``) - an explicit value range.
* ``auto`` - guessed from dtype and range: 8-bit data -> 0..255; values below -500 and above 300
  (air and bone in HU) -> ``ct``; otherwise ``mr``.

Non-finite voxels (NaN, +-inf) are never silently propagated: they are excluded from the percentiles, mapped
to 0 (background) and counted in a warning. A volume without a single finite voxel is an error.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from .errors import InputError

CT_WINDOWS = {  # name -> (level, width) in HU
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "soft": (50.0, 400.0),
    "bone": (400.0, 1800.0),
    "lung": (-600.0, 1500.0),
    "wide": (400.0, 3000.0),
}
_WINDOW_ALIASES = {"soft_tissue": "soft", "soft-tissue": "soft", "softtissue": "soft", "tissue": "soft"}
DEFAULT_CT_WINDOW = "bone"
PERCENTILE_DEFAULTS = {"mr": (0.5, 99.5), "pet": (0.0, 99.9)}
# Percentiles of a huge volume are estimated from at most this many voxels (a fixed stride, deterministic).
_MAX_PERCENTILE_SAMPLES = 2_000_000

PRESET_HELP = ("ct[:brain|subdural|soft|bone|lung|wide], mr[:LO:HI], pet[:LO:HI], manual:LOW:HIGH or auto")


@dataclass(frozen=True)
class Preset:
    kind: str  # "ct", "mr", "pet", "manual" or "auto"
    window: Optional[Tuple[float, float]] = None  # (low, high) values for ct / manual
    percentiles: Optional[Tuple[float, float]] = None  # for mr / pet
    text: str = ""

    def describe(self) -> str:
        return self.text or self.kind


@dataclass(frozen=True)
class Window:
    """The value range actually used for one volume, and how it was chosen (for reports)."""
    low: float
    high: float
    how: str


def parse_preset(text) -> Preset:
    if isinstance(text, Preset):
        return text
    raw = "auto" if text is None else str(text).strip()
    parts = [p for p in re.split(r"[:\s,]+", raw.lower()) if p]
    if not parts:
        parts = ["auto"]
    kind, args = parts[0], parts[1:]
    bad = InputError(f"Unknown intensity preset '{raw}'; use {PRESET_HELP}.")
    if kind == "auto" and not args:
        return Preset("auto", text=raw)
    if kind == "ct":
        if len(args) > 1:
            raise bad
        name = _WINDOW_ALIASES.get(args[0], args[0]) if args else DEFAULT_CT_WINDOW
        if name not in CT_WINDOWS:
            raise InputError(f"Unknown CT window '{args[0]}'; choose one of: {', '.join(CT_WINDOWS)}.")
        level, width = CT_WINDOWS[name]
        return Preset("ct", window=(level - width / 2, level + width / 2), text=f"ct:{name} (L{level:g} W{width:g})")
    if kind in PERCENTILE_DEFAULTS:
        if not args:
            lo, hi = PERCENTILE_DEFAULTS[kind]
        elif len(args) == 2:
            lo, hi = _numbers(args, bad)
        else:
            raise bad
        if not 0.0 <= lo < hi <= 100.0:
            raise InputError(f"Percentiles of preset '{raw}' must satisfy 0 <= LO < HI <= 100.")
        return Preset(kind, percentiles=(lo, hi), text=f"{kind} (percentiles {lo:g}-{hi:g})")
    if kind == "manual":
        if len(args) != 2:
            raise InputError(f"Preset '{raw}' needs two values: manual:LOW:HIGH.")
        low, high = _numbers(args, bad)
        if not high > low:
            raise InputError(f"Preset '{raw}' needs HIGH greater than LOW.")
        return Preset("manual", window=(low, high), text=f"manual {low:g}..{high:g}")
    raise bad


def _numbers(args, error):
    try:
        values = [float(a) for a in args]
    except ValueError:
        raise error from None
    if not all(np.isfinite(values)):
        raise error
    return values


def _sample(values: np.ndarray) -> np.ndarray:
    flat = values.reshape(-1)
    stride = max(1, flat.size // _MAX_PERCENTILE_SAMPLES)
    return flat[::stride]


def choose_window(values: np.ndarray, preset, name: str = "volume", eight_bit: bool = False) -> Window:
    """Resolve a preset to a concrete value range for this volume (finite voxels only)."""
    preset = parse_preset(preset)
    sample = _sample(values)
    finite = sample[np.isfinite(sample)]
    if finite.size == 0:
        raise InputError(f"Volume '{name}' contains no finite values (all NaN or infinite).")
    vmin, vmax = float(finite.min()), float(finite.max())
    if vmin == vmax:
        raise InputError(f"Volume '{name}' is constant (every voxel is {vmin:g}); there is nothing to fuse.")

    if preset.kind == "auto":
        if eight_bit and vmin >= 0 and vmax <= 255:
            return Window(0.0, 255.0, "auto: 8-bit 0..255")
        if vmin < -500 and vmax > 300:
            w = choose_window(values, "ct", name)
            return Window(w.low, w.high, f"auto: looks like CT in HU -> {w.how}")
        w = choose_window(values, "mr", name)
        return Window(w.low, w.high, f"auto: {w.how}")
    if preset.window is not None:
        return Window(preset.window[0], preset.window[1], preset.describe())
    lo_p, hi_p = preset.percentiles
    low, high = (float(v) for v in np.percentile(finite, [lo_p, hi_p]))
    if high <= low:
        # Sparse images (e.g. mostly-zero PET) can have equal percentiles: widen to the full finite range.
        low, high = vmin, vmax
    return Window(low, high, f"{preset.describe()}: {low:.4g}..{high:.4g}")


def apply_window(values: np.ndarray, window: Window) -> Tuple[np.ndarray, int]:
    """Return float32 values in [0, 1] and the number of non-finite voxels (mapped to 0). Never in place."""
    values = np.asarray(values)
    span = float(window.high) - float(window.low)
    # float32 is enough unless the values or the window approach its range (3.4e38): then (x - low) would
    # overflow to inf and a whole source would silently become 0, so such data is mapped in float64.
    fits = max(abs(float(window.low)), abs(float(window.high)), span) < 1e30 and span > 1e-30
    if fits and values.dtype.itemsize > 4 and values.size:
        with np.errstate(invalid="ignore"):
            fits = not float(np.nanmax(np.abs(values), initial=0.0)) >= 1e30
    kind = np.float32 if fits else np.float64
    out = (np.asarray(values, dtype=kind) - kind(window.low)) * kind(1.0 / span)  # new array: input untouched
    bad = ~np.isfinite(out)
    n_bad = int(np.count_nonzero(bad))
    if n_bad:
        out[bad] = 0.0
    np.clip(out, 0.0, 1.0, out=out)
    return out.astype(np.float32, copy=False), n_bad
