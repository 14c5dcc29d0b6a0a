"""MFEnet's encoder in int8: static post-training quantisation of its convolutions (oneDNN); the decoder's C7-C9
follow where their shipped ranges fit (int8_decoder.py), C10 stays float32.

Why the encoder first: it holds about 84% of MFEnet's multiplications (it runs once per source, 64-channel 3x3
convolutions at full resolution), and int8 there stays within the accuracy guard (>= 45 dB against float32 on
real validation pairs, Testing/test_acceleration.py). A decoder wholly in int8 quantises the output itself and
fell below it (41.7 dB measured with both parts in int8); see int8_decoder.py for the part that does not.

Why oneDNN: its int8 kernels follow ONEDNN_MAX_CPU_ISA (VNNI on AVX-512 CPUs, vpmaddubsw on AVX2 ones), so
an AVX2 laptop is emulated faithfully; measured 2.3-3.3x (AVX2) and about 4x (AVX-512) faster than the
float32 fusion. Setting torch's quantised engine is process-wide; nothing else in MedFusion quantises.

Calibration (the activation ranges) uses slices of the built-in head phantom (phantom.py: CT, MR and PET,
rendered deterministically), never patient data, so the same weights give the same int8 network everywhere.
Activation ranges are the plain min / max seen (not oneDNN's default histogram, which clips the tails): real
images go beyond the phantom's tails, and clipping them cost accuracy. Worst of the guard's six real validation
crops against float32: 42.3 dB with the histogram observer, 47.9 dB with min / max.

The ranges that calibration finds depend only on the weights and the phantom, so they are shipped
(weights/mfenet-int8-ranges.json, with a fingerprint of the encoder weights they belong to) and a run sets
them instead of rendering the phantom and observing it (about 2-5 s a process, most of a short volume's int8
gain). Weights that differ from the fingerprint are calibrated at run time as before;
Testing/test_acceleration.py checks that the shipped ranges are what calibration gives.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import warnings
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

ENGINE = "onednn"
RANGES_FILE = Path(__file__).resolve().parent / "weights" / "mfenet-int8-ranges.json"


@functools.lru_cache(maxsize=1)
def calibration_slices():
    """(N, 1, H, W) float32 in [0, 1]: every eighth slice of the middle half of the phantom's CT, MR and PET, each
    scaled to [0, 1] (13 slices: calibration took 2.0 s against 3.2 s with every fourth, for 47.9 against 48.5 dB)."""
    import SimpleITK as sitk
    import torch

    from .phantom import make_head_phantom

    slices = []
    for image in make_head_phantom(("ct", "mr", "pet"), scale=0.5).values():
        array = sitk.GetArrayFromImage(image).astype(np.float32)
        array = (array - array.min()) / max(float(array.max() - array.min()), 1e-6)
        depth = array.shape[0]
        slices += [torch.from_numpy(np.ascontiguousarray(array[z]))[None] for z in range(depth // 4, 3 * depth // 4, 8)]
    shape = max(s.shape[-2] for s in slices), max(s.shape[-1] for s in slices)
    padded = [torch.nn.functional.pad(s, (0, shape[1] - s.shape[-1], 0, shape[0] - s.shape[-2])) for s in slices]
    return torch.stack(padded)


def weights_fingerprint(module) -> str:
    """sha256 of a module's parameter names and float32 values: which weights a set of ranges belongs to."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def activation_observers(prepared) -> dict:
    """{name: observer} of a prepared (FX) module's activations: where its ranges are read and set."""
    return {name: module for name, module in prepared.named_modules() if name.startswith("activation_post_process")}


def qconfig():
    """Plain min / max activation ranges (see the module docstring), per-channel symmetric int8 weights."""
    import torch
    from torch.ao.quantization import QConfig
    from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

    return QConfig(activation=MinMaxObserver.with_args(dtype=torch.quint8),
                   weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric))


def prepared_copy(module, mapping, example):
    """A float32 copy of ``module`` prepared for quantisation with ``mapping`` (a QConfigMapping) on oneDNN."""
    import torch
    from torch.ao.quantization.quantize_fx import prepare_fx

    torch.backends.quantized.engine = ENGINE
    return prepare_fx(copy.deepcopy(module).float().eval(), mapping, (example,))


def converted_with_ranges(prepared, ranges: Dict[str, List[float]]):
    """The int8 module of ``prepared`` with its activation ranges set to ``ranges`` (no calibration run)."""
    import torch
    from torch.ao.quantization.quantize_fx import convert_fx

    observers = activation_observers(prepared)
    for name, (low, high) in ranges.items():
        observers[name].min_val = torch.tensor(low)
        observers[name].max_val = torch.tensor(high)
    return convert_fx(prepared)


def _prepared(encoder):
    import torch
    from torch.ao.quantization import QConfigMapping

    return prepared_copy(encoder, QConfigMapping().set_global(qconfig()), torch.zeros(1, 1, 16, 16))


def calibrated_ranges(encoder) -> Dict[str, List[float]]:
    """{observer: [min, max]} of the encoder's activations over the phantom calibration slices."""
    import torch

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's notice that it moves to torchao: not the user's concern
        prepared = _prepared(encoder)
        data = calibration_slices()
        for start in range(0, data.shape[0], 8):
            prepared(data[start:start + 8])
    return {name: [float(obs.min_val), float(obs.max_val)] for name, obs in activation_observers(prepared).items()}


def shipped_ranges(encoder) -> Optional[Dict[str, List[float]]]:
    """The shipped calibration ranges if they belong to these weights, else None."""
    try:
        shipped = json.loads(RANGES_FILE.read_text())
    except (OSError, ValueError):
        return None
    return shipped["ranges"] if shipped.get("weights_sha256") == weights_fingerprint(encoder) else None


def write_shipped_ranges(encoder) -> None:
    """Calibrate and write RANGES_FILE (run after retraining MFEnet; the test says when it is due)."""
    from .atomic_file import write_text_atomically

    ranges = calibrated_ranges(encoder)
    write_text_atomically(RANGES_FILE, json.dumps({"weights_sha256": weights_fingerprint(encoder), "ranges": ranges},
                                                  indent=1) + "\n")


def quantise_encoder(encoder, ranges: Optional[Dict[str, List[float]]] = None):
    """An int8 copy of ``encoder`` (float32 in, float32 out), its activation ranges ``ranges`` (default: the
    shipped ones where they belong to these weights, else calibrated now)."""
    import torch

    ranges = ranges or shipped_ranges(encoder) or calibrated_ranges(encoder)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = _prepared(encoder)
        if set(activation_observers(prepared)) != set(ranges):  # a changed graph: the ranges are not for it
            ranges = calibrated_ranges(encoder)
        return converted_with_ranges(prepared, ranges)


def quantise_in_place(model) -> None:
    """Swap MFEnet's encoder for its int8 copy, and its decoder's C7-C9 too where shipped ranges belong to these
    weights (int8_decoder.py); the model is built for this run only, and its fuse function follows."""
    from . import int8_decoder
    from .methods.mfenet import MFEnet

    if not isinstance(model, MFEnet):
        raise TypeError(f"int8 is implemented for MFEnet only, not {type(model).__name__}")
    if not getattr(model, "encoder_is_int8", False):  # a re-plan (FusionMethod.to) must not quantise twice
        decoder_ranges = int8_decoder.shipped_ranges(model.encoder, model.decoder)  # of the float32 weights
        model.encoder = quantise_encoder(model.encoder)
        model.encoder_is_int8 = True
        decoder = int8_decoder.quantise_decoder(model.decoder, decoder_ranges) if decoder_ranges else None
        if decoder is not None:
            model.decoder = decoder
        model.decoder_is_int8 = decoder is not None
