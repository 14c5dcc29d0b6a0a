"""Discrete-wavelet-transform fusion (PyWavelets): averaged approximation, max-abs detail coefficients.

Li, Manjunath & Mitra, 'Multisensor image fusion using the wavelet transform', Graphical Models and Image
Processing 57(3), 1995. PyWavelets runs on the CPU; a batch is transformed in one vectorised call.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError


def build(device, wavelet: str = "db2", levels: int = 3):
    import pywt

    if wavelet not in pywt.wavelist(kind="discrete"):
        raise InputError(f"Unknown discrete wavelet '{wavelet}'; try db2, haar, sym4 or bior2.2.")
    wave = pywt.Wavelet(wavelet)

    def fuse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        h, w = a.shape[-2:]
        n_levels = max(1, min(int(levels), pywt.dwt_max_level(min(h, w), wave.dec_len)))
        xa = a[:, 0].detach().cpu().double().numpy()
        xb = b[:, 0].detach().cpu().double().numpy()
        ca = pywt.wavedec2(xa, wave, level=n_levels, axes=(-2, -1))
        cb = pywt.wavedec2(xb, wave, level=n_levels, axes=(-2, -1))
        fused = [0.5 * (ca[0] + cb[0])]
        for details_a, details_b in zip(ca[1:], cb[1:]):
            fused.append(tuple(np.where(np.abs(da) >= np.abs(db), da, db) for da, db in zip(details_a, details_b)))
        out = pywt.waverec2(fused, wave, axes=(-2, -1))[:, :h, :w]
        return torch.from_numpy(np.clip(out, 0.0, 1.0).astype(np.float32)).unsqueeze(1).to(a.device)

    return fuse
