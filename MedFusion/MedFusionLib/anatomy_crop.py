"""Work only where there is anatomy: run a method on the part of a batch where either source has data.

Per batch of slices (the method's inputs, after windowing and the field-of-view fill, in [0, 1]):

* slices where both sources are exactly 0 are not run: their output is the method's output on an empty
  slice, computed once per slice shape;
* the other slices are cropped to the union bounding box of both sources' non-zero voxels, grown by the
  method's receptive-field margin ``m`` (the kept box K), and the method runs on K grown by ``m`` again (the
  input box I), both clipped to the slice. Inside K every output voxel only sees inputs inside I (or the slice
  border, which the crop keeps where it is), so it equals the uncropped output; outside K every voxel sees only
  zeros, so it equals the method's output on an empty slice.

A margin is declared on the registry entry (``MethodInfo.crop_margin``, methods/__init__.py) only for methods
whose output is local (a finite receptive field and no statistics over the slice). Methods with slice-wide
statistics (PCA weights, EDPSN's Otsu thresholds, Canny's automatic thresholds), size-dependent pyramids
(Laplacian, DWT, FusionCINN's padded Haar levels) and any entry that declares none get ``None``: only empty
slices are skipped for them, which is exact for every method since all fuse slice by slice.
Testing/test_anatomy_crop.py checks the equality (1e-6) for every method on real volumes.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import numpy as np


def margin_for(method: str, options: Optional[dict] = None) -> Optional[int]:
    """The method's receptive-field margin (declared on its registry entry, ``MethodInfo.crop_margin``), or None
    when its output is not local (see the module docstring)."""
    from .methods import REGISTRY

    return REGISTRY.get(method).margin(options)


def _span(any_along: np.ndarray, margin: int) -> Tuple[int, int]:
    """[first, last + 1) of the True entries of a 1D mask, grown by ``margin`` and clipped."""
    where = np.flatnonzero(any_along)
    return max(0, int(where[0]) - margin), min(any_along.size, int(where[-1]) + 1 + margin)


class AnatomyCrop:
    """``crop(luma_a, luma_b)``: the method's (n, 1, H, W) output tensor for (n, H, W) float32 numpy slabs.

    ``margin=None`` skips empty slices only; ``enabled=False`` runs every batch whole (the plain loop).
    ``computed`` / ``total`` count the pixels the method ran on and the pixels of the slabs it was given.
    """

    def __init__(self, fuse: Callable, device, margin: Optional[int], enabled: bool = True):
        self.fuse, self.device, self.margin, self.enabled = fuse, device, margin, enabled
        self._empty: Dict[Tuple[int, int], object] = {}  # slice shape -> the method's output on zeros
        self.computed = self.total = 0

    def _tensor(self, array: np.ndarray):
        import torch

        return torch.from_numpy(np.ascontiguousarray(array)).unsqueeze(1).to(self.device, non_blocking=True)

    def _empty_output(self, shape: Tuple[int, int]):
        import torch

        if shape not in self._empty:
            zeros = torch.zeros((1, 1) + shape, dtype=torch.float32, device=self.device)
            self._empty[shape] = self.fuse(zeros, zeros).float()
            self.computed += shape[0] * shape[1]
        return self._empty[shape]

    def __call__(self, luma_a: np.ndarray, luma_b: np.ndarray):
        import torch

        n, height, width = luma_a.shape
        self.total += luma_a.size
        if not self.enabled:
            self.computed += luma_a.size
            return self.fuse(self._tensor(luma_a), self._tensor(luma_b)).float()
        data = (luma_a != 0) | (luma_b != 0)
        full = data.any(axis=(1, 2))
        rows, cols = data.any(axis=(0, 2)), data.any(axis=(0, 1))
        if full.all() and (self.margin is None or (rows.all() and cols.all())):  # nothing to leave out
            self.computed += luma_a.size
            return self.fuse(self._tensor(luma_a), self._tensor(luma_b)).float()
        out = self._empty_output((height, width)).expand(n, 1, height, width).clone()
        if not full.any():
            return out
        index = np.flatnonzero(full)
        if self.margin is None:  # the whole of every slice with data
            (ky0, ky1), (kx0, kx1) = (0, height), (0, width)
            (iy0, iy1), (ix0, ix1) = (0, height), (0, width)
        else:
            (ky0, ky1), (kx0, kx1) = _span(rows, self.margin), _span(cols, self.margin)
            (iy0, iy1), (ix0, ix1) = _span(rows, 2 * self.margin), _span(cols, 2 * self.margin)
            if (iy0, iy1, ix0, ix1) == (0, height, 0, width):  # the input is whole: so is its output
                (ky0, ky1), (kx0, kx1) = (0, height), (0, width)
        crop = (index, slice(iy0, iy1), slice(ix0, ix1))
        fused = self.fuse(self._tensor(luma_a[crop]), self._tensor(luma_b[crop])).float()
        self.computed += fused.numel()
        rows_out = torch.as_tensor(index, device=out.device)
        out[rows_out, :, ky0:ky1, kx0:kx1] = fused[:, :, ky0 - iy0:ky1 - iy0, kx0 - ix0:kx1 - ix0].to(out.dtype)
        return out
