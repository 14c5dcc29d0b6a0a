"""MFEnet's decoder C7-C9 in int8 (oneDNN, static post-training quantisation), C10 in float32; shipped ranges only.

Why: with the encoder in int8 (int8_encoder.py) the float32 decoder is most of what is left on a CPU without
AMX: 50-58 ms of a 256 x 256 slice on the AVX2 class against 27-31 ms with C7-C9 in int8 (2 threads, scratch
timings; scripts/mfenet_layer_probe.py times the float32 parts). C10 (16 -> 1 channels, 144 multiply-adds a
pixel) stays in float32 so that the output itself is not quantised: with it in int8 the worst of 18 validation
pairs fell to 39.6 dB.

Why calibrated on training pairs, not on the phantom like the encoder: the decoder sees fused features, and
the phantom's gave ranges that clipped real CT-MRI pairs (worst of the 130 validation pairs 44.5 dB, below the
45 dB guard); fused features of 60 training pairs (20 a modality folder, evenly spaced; never a validation
case) give 45.7 dB there. Training images are not shipped, so the ranges are computed by
:func:`write_shipped_ranges` from the shared data and shipped (weights/mfenet-int8-decoder-ranges.json, with a
fingerprint of the encoder and decoder weights they belong to). Weights that differ from the fingerprint keep
their decoder in float32: nothing is calibrated at run time. Testing/test_int8.py checks that the shipped ranges
are what calibration gives and that int8 stays within the guard on the validation pairs.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from .int8_encoder import activation_observers, converted_with_ranges, prepared_copy, qconfig, weights_fingerprint

QUANTISED_LAYERS = ("c7", "c8", "c9")
RANGES_FILE = Path(__file__).resolve().parent / "weights" / "mfenet-int8-decoder-ranges.json"
CALIBRATION_PAIRS_PER_FOLDER = 20
CALIBRATION_FOLDERS = ("CT-MRI", "PET-MRI", "SPECT-MRI")


def model_fingerprint(encoder, decoder) -> str:
    """Which float32 weights (encoder and decoder: the decoder's inputs come from the encoder) ranges are for."""
    return hashlib.sha256((weights_fingerprint(encoder) + weights_fingerprint(decoder)).encode()).hexdigest()


def _prepared(decoder):
    import torch
    from torch.ao.quantization import QConfigMapping

    mapping = QConfigMapping()
    for name in QUANTISED_LAYERS:
        mapping = mapping.set_module_name(name, qconfig())
    return prepared_copy(decoder, mapping, torch.zeros(1, 64, 16, 16))


def calibration_features(int8_encoder, harvard_root: Optional[Path] = None):
    """Max-fused int8-encoder features of the calibration pairs (training split only), (N, 64, 256, 256)."""
    import torch

    from .data_split import list_pairs, read_y

    features = []
    for folder in CALIBRATION_FOLDERS:
        pairs = list_pairs(harvard_root, split="train", folders=[folder])
        chosen = pairs[::max(1, len(pairs) // CALIBRATION_PAIRS_PER_FOLDER)][:CALIBRATION_PAIRS_PER_FOLDER]
        a, b = (torch.from_numpy(np.stack([read_y(getattr(p, side)) for p in chosen]).astype(np.float32)[:, None])
                for side in ("path_a", "path_b"))
        with torch.no_grad():
            for start in range(0, len(chosen), 8):
                features.append(torch.maximum(int8_encoder(a[start:start + 8]), int8_encoder(b[start:start + 8])))
    return torch.cat(features)


def calibrated_ranges(decoder, int8_encoder, harvard_root: Optional[Path] = None) -> Dict[str, List[float]]:
    """{observer: [min, max]} of the quantised layers' activations over the calibration features."""
    import torch

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's notice that it moves to torchao
        prepared = _prepared(decoder)
        features = calibration_features(int8_encoder, harvard_root)
        for start in range(0, features.shape[0], 8):
            prepared(features[start:start + 8])
    return {name: [float(obs.min_val), float(obs.max_val)] for name, obs in activation_observers(prepared).items()}


def write_shipped_ranges(encoder, decoder, harvard_root: Optional[Path] = None) -> None:
    """Calibrate and write RANGES_FILE (after retraining MFEnet, with the shared data present)."""
    from .atomic_file import write_text_atomically
    from .int8_encoder import quantise_encoder

    ranges = calibrated_ranges(decoder, quantise_encoder(encoder), harvard_root)
    record = {"weights_sha256": model_fingerprint(encoder, decoder), "layers": list(QUANTISED_LAYERS),
              "calibration": f"max-fused int8-encoder features of {CALIBRATION_PAIRS_PER_FOLDER} training pairs "
                             f"of each of {', '.join(CALIBRATION_FOLDERS)} (evenly spaced)", "ranges": ranges}
    write_text_atomically(RANGES_FILE, json.dumps(record, indent=1) + "\n")


def shipped_ranges(encoder, decoder) -> Optional[Dict[str, List[float]]]:
    """The shipped ranges if they belong to these float32 weights, else None."""
    try:
        shipped = json.loads(RANGES_FILE.read_text())
    except (OSError, ValueError):
        return None
    if shipped.get("weights_sha256") != model_fingerprint(encoder, decoder):
        return None
    return shipped["ranges"]


def quantise_decoder(decoder, ranges: Dict[str, List[float]]):
    """An int8 copy of ``decoder`` (C7-C9 int8, C10 float32; float32 in and out) with these activation ranges,
    or None when they do not fit its graph."""
    import torch

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = _prepared(decoder)
        if set(activation_observers(prepared)) != set(ranges):
            return None
        return converted_with_ranges(prepared, ranges)
