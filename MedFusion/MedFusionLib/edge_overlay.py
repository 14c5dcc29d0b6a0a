"""The edge overlay: 3D Canny edges of each normalised source, on A's grid, as one labelmap (1 = A, 2 = B, 3 = both).

Edges are computed on the whole volume, not per slice, so the overlay is the same whatever slicing axis the
fusion used, and its outlines are continuous in every view (a surface cut by any plane is a curve).

For each source (a [0, 1] volume on A's grid):

1. gradient of a Gaussian-smoothed volume (central differences), sigma in millimetres (SimpleITK's recursive
   Gaussian with the image spacing), so that anisotropic voxels are smoothed alike in every physical direction
   and CT noise is averaged away before it can become an edge; the gradient magnitude is rotation invariant,
   so an oblique direction matrix needs no special care;
2. non-maximum suppression along the gradient, quantised to the 26 (3D) or 8 (2D) neighbours of a voxel, with
   the direction taken in voxel steps (gradient / spacing), which is what anisotropic spacing needs; gradients
   below 0.005 per mm are never edges (given thresholds below that act as 0.005);
3. hysteresis: voxels above ``low`` that connect (26-connected) to a voxel above ``high``.

Thresholds: given (``thresholds=(low, high)``, in units of the normalised intensity per mm), or chosen by a
bisection so that the edges cover a fixed share of the source's foreground (voxels > 0.02; see
:func:`automatic_thresholds`). The share is the one "detail" control: ``detail`` in [0, 1] (default 0.5) asks
for 1% .. 3% .. 9% of each source's foreground, and smooths less as it rises (sigma 2.1 .. 1.5 .. 1.06 mm).
``high`` never goes below 0.01 per mm, so a flat image gets no noise edges to fill its share. B's edges are
kept only inside its field of view, at least 2 sigma plus one voxel from its border: the cut where B has no
data is not anatomy.

Memory: the gradient and the suppression run in chunks of about 4 M voxels along the slowest array axis (with
a halo of 4 sigma); what is volume-sized is one float32 map of suppressed magnitudes, a distance map for B's
field of view, and a few uint8 / bool masks. Measured on sts_001's CT resampled to 28 M voxels with its MR:
about 10 s and 0.53 GB of peak memory on 2 shared CPU cores.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from .edges import edge_labels
from .errors import Cancelled
from .settings import EDGE_DETAIL_DEFAULT as DEFAULT_DETAIL, EDGE_DETAIL_RANGE as DETAIL_RANGE  # noqa: F401

FOREGROUND_LEVEL = 0.02  # normalised value above which a voxel is tissue, not background
LOW_RATIO = 0.5
MIN_HIGH = 0.01  # per mm: weaker gradients are noise, whatever share of edges was asked for
NMS_FLOOR = LOW_RATIO * MIN_HIGH  # weaker gradients are never edges (given thresholds too)
_TIE_MARGIN = 1e-3
_BASE_SIGMA_MM = 1.5
_BASE_SHARE = 0.03
_CHUNK_VOXELS = 4_000_000
_SEARCH_VOXELS = 8_000_000  # the threshold search runs on a central slab of at most this many voxels
_BISECTION_STEPS = 8  # log-range / 2^8: about 1% resolution on the threshold, below the 5% tie
_SEED_QUANTILE = 0.995
_TIE = 0.05  # relative: strengths this close to the chosen threshold count as equal
_TOO_FEW = 0.25  # of the share: below this, the automatic thresholds take the next coverage up


def sigma_mm(detail: float) -> float:
    return _BASE_SIGMA_MM * 2.0 ** (0.5 - detail)


def edge_share(detail: float) -> float:
    """The share of a source's foreground that automatic thresholds outline: 1% at 0, 3% at 0.5, 9% at 1."""
    return _BASE_SHARE * 3.0 ** (2.0 * detail - 1.0)


def _gradient(block: np.ndarray, spacing: Sequence[float], sigma: float) -> np.ndarray:
    """Gradient (..., ndim) in array-axis order, per mm, of the block smoothed by ``sigma`` mm.

    One recursive Gaussian (ndim passes) and central differences: a third of the time of a Gaussian derivative
    per axis (ndim^2 passes). Axes shorter than 4 are padded (ITK's recursive filter needs 4 samples).
    """
    pad = [(0, max(0, 4 - n)) for n in block.shape]
    padded = np.pad(block, pad, mode="edge") if any(p[1] for p in pad) else block
    image = sitk.GetImageFromArray(padded)
    image.SetSpacing(tuple(float(s) for s in spacing[::-1]))  # array axes [k, j, i] -> image axes (i, j, k)
    smooth = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(image, sigma))
    smooth = smooth[tuple(slice(0, n) for n in block.shape)]
    gradient = np.zeros(block.shape + (block.ndim,), np.float32)
    for axis, (step, n) in enumerate(zip(spacing, block.shape)):
        if n > 1:
            gradient[..., axis] = np.gradient(smooth, float(step), axis=axis)
    return gradient


def _suppress(gradient: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Gradient magnitude where it is a maximum along the gradient direction, else 0 (float32).

    Only voxels above the weakest possible low threshold are looked at (most of a volume is flat), each against
    its two neighbours along the gradient, found by flat index in the zero-padded magnitude.
    """
    magnitude = np.sqrt(np.sum(gradient * gradient, axis=-1, dtype=np.float32))
    out = np.zeros(magnitude.shape, np.float32)
    flat = magnitude.reshape(-1)
    candidates = np.flatnonzero(flat > NMS_FLOOR).astype(np.int32)  # chunks stay far below 2**31 voxels
    if candidates.size == 0:
        return out
    steps = gradient.reshape(-1, magnitude.ndim)[candidates] / np.asarray(spacing, np.float32)  # voxel steps
    offset = np.rint(steps / np.abs(steps).max(axis=1, keepdims=True)).astype(np.int32)
    first = offset[np.arange(offset.shape[0]), np.argmax(offset != 0, axis=1)]
    offset *= np.where(first < 0, -1, 1)[:, np.newaxis]  # one sign per direction: ties break the same way
    padded = np.pad(magnitude, 1)
    strides = (np.asarray(padded.strides) // padded.itemsize).astype(np.int32)
    centre = sum((c + 1) * stride for c, stride in zip(np.unravel_index(candidates, magnitude.shape), strides))
    step = offset @ strides
    values, lookup = flat[candidates], padded.reshape(-1)
    # A step between two voxels gives them equal magnitudes up to rounding: a relative tie margin keeps the same
    # one of the two (the one behind) all along an outline, instead of zig-zagging between them.
    ahead, behind = lookup[centre + step], lookup[centre - step]
    keep = (values >= ahead * (1.0 - _TIE_MARGIN)) & (values > behind * (1.0 + _TIE_MARGIN))
    out.reshape(-1)[candidates[keep]] = values[keep]
    return out


def suppressed_magnitude(volume: np.ndarray, spacing: Sequence[float], sigma: float,
                         cancel: Optional[Callable[[], bool]] = None) -> np.ndarray:
    """Non-maximum-suppressed gradient magnitude of a [0, 1] volume (uint8 volumes count as value / 255).

    ``spacing`` in array-axis order (mm). Computed in chunks along axis 0 with a halo, for memory.
    """
    scale = 1.0 / 255.0 if volume.dtype == np.uint8 else 1.0
    out = np.zeros(volume.shape, np.float32)
    per_slice = max(1, int(np.prod(volume.shape[1:])))
    chunk = max(8, _CHUNK_VOXELS // per_slice)
    halo = int(math.ceil(4.0 * sigma / spacing[0])) + 1
    for start in range(0, volume.shape[0], chunk):
        if cancel is not None and cancel():
            raise Cancelled("Fusion was cancelled; nothing was written.")
        end = min(volume.shape[0], start + chunk)
        low, high = max(0, start - halo), min(volume.shape[0], end + halo)
        block = volume[low:high].astype(np.float32) * np.float32(scale)
        out[start:end] = _suppress(_gradient(block, spacing, sigma), spacing)[start - low: end - low]
    return out


def _hysteresis(suppressed: np.ndarray, low: float, high: float) -> np.ndarray:
    weak = sitk.GetImageFromArray((suppressed >= low).astype(np.uint8))
    strong = sitk.GetImageFromArray((suppressed >= high).astype(np.uint8))
    kept = sitk.BinaryReconstructionByDilation(strong, weak, backgroundValue=0, foregroundValue=1, fullyConnected=True)
    return sitk.GetArrayFromImage(kept) > 0


def _search_slab(shape) -> slice:
    per_slice = max(1, int(np.prod(shape[1:])))
    n = min(shape[0], max(1, _SEARCH_VOXELS // per_slice))
    start = (shape[0] - n) // 2
    return slice(start, start + n)


def automatic_thresholds(suppressed: np.ndarray, foreground: np.ndarray, share: float) -> Tuple[float, float]:
    """(low, high) so that hysteresis edges cover about ``share`` of the foreground (a bisection).

    First as classic Canny, ``low = 0.5 * high``, searching ``high``: a seed then keeps its whole outline, so a
    few clear outlines stay whole. In 3D the maxima surfaces touch one another, and a weak ``low`` connects most
    of them to some seed: when even the strongest ``high`` covers more than the share, ``low`` is searched
    instead, with ``high = low / 0.5`` capped at the 99.5th percentile of the maxima so that a strict ``low``
    still has seeds.
    """
    region = _search_slab(suppressed.shape)
    magnitude, mask = suppressed[region], foreground[region]
    candidates = magnitude[mask & (magnitude > 0)]
    n_foreground = int(mask.sum())
    if candidates.size == 0 or n_foreground == 0 or float(candidates.max()) < MIN_HIGH:
        return LOW_RATIO * MIN_HIGH, MIN_HIGH
    strongest = float(candidates.max())
    seed_cap = max(MIN_HIGH, float(np.quantile(candidates, _SEED_QUANTILE)))

    def classic(high: float) -> Tuple[float, float]:
        return LOW_RATIO * high, high

    def capped(low: float) -> Tuple[float, float]:
        return low, max(MIN_HIGH, min(low / LOW_RATIO, seed_cap))

    def coverage(pair: Tuple[float, float]) -> float:
        return np.count_nonzero(_hysteresis(magnitude, *pair) & mask) / n_foreground

    if coverage(classic(strongest)) <= share:
        pair, bounds = classic, (MIN_HIGH, strongest)
    else:
        pair, bounds = capped, (LOW_RATIO * MIN_HIGH, seed_cap)
    lenient, strict = (math.log(b) for b in bounds)
    strict_coverage = None
    for _ in range(_BISECTION_STEPS):
        middle = 0.5 * (lenient + strict)
        covered = coverage(pair(math.exp(middle)))
        if covered > share:
            lenient = middle
        else:
            strict, strict_coverage = middle, covered
    if strict_coverage is None:
        strict_coverage = coverage(pair(math.exp(strict)))
    # The share is a target, not a guillotine: an image whose few boundaries are all equally clear (coverage
    # jumps from almost nothing to more than the share) keeps them whole rather than losing them; and a boundary
    # within _TIE of the threshold is kept with it, so one outline is not cut where its strength wavers.
    end = lenient if strict_coverage < _TOO_FEW * share and lenient > math.log(bounds[0]) else strict
    return pair(math.exp(end) * (1.0 - _TIE))


def source_edges(volume: np.ndarray, spacing: Sequence[float], detail: float = DEFAULT_DETAIL,
                 thresholds: Optional[Tuple[float, float]] = None, region: Optional[np.ndarray] = None,
                 cancel: Optional[Callable[[], bool]] = None) -> np.ndarray:
    """Boolean 3D (or 2D) Canny edges of one [0, 1] (or uint8) source; ``region`` limits where edges may be."""
    suppressed = suppressed_magnitude(volume, spacing, sigma_mm(detail), cancel)
    if region is not None:
        suppressed[~region] = 0.0
    if thresholds is None:
        level = FOREGROUND_LEVEL * (255.0 if volume.dtype == np.uint8 else 1.0)
        foreground = volume > level
        if region is not None:
            foreground &= region
        thresholds = automatic_thresholds(suppressed, foreground, edge_share(detail))
    return _hysteresis(suppressed, *thresholds)


def far_inside(inside: np.ndarray, spacing: Sequence[float], margin_mm: float) -> np.ndarray:
    """Voxels of the mask ``inside`` more than ``margin_mm`` from its border (physical distance)."""
    mask = sitk.GetImageFromArray(inside.astype(np.uint8))
    mask.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    distance = sitk.SignedMaurerDistanceMap(mask, insideIsPositive=True, squaredDistance=False,
                                            useImageSpacing=True)
    return sitk.GetArrayFromImage(distance) > margin_mm


def field_of_view(moving: sitk.Image, reference: sitk.Image) -> np.ndarray:
    """Bool array on the reference grid: inside the moving image's field of view (nearest-neighbour)."""
    ones = sitk.Image(moving.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(moving)
    return sitk.GetArrayFromImage(sitk.Resample(ones, reference, sitk.Transform(), sitk.sitkNearestNeighbor,
                                                0, sitk.sitkUInt8)) > 0


def edge_overlay(source_a: np.ndarray, source_b: np.ndarray, spacing: Sequence[float],
                 inside_b: Optional[np.ndarray] = None, detail: float = DEFAULT_DETAIL,
                 thresholds: Optional[Tuple[float, float]] = None,
                 cancel: Optional[Callable[[], bool]] = None) -> np.ndarray:
    """uint8 labelmap (1 = edge of A, 2 = of B, 3 = both) of two sources on one grid (array-axis spacing, mm).

    ``inside_b``: B's field of view on that grid (None: everywhere); B's edges stay away from its border.
    """
    edges_a = source_edges(source_a, spacing, detail, thresholds, cancel=cancel)
    region = None
    if inside_b is not None and not inside_b.all():
        region = far_inside(inside_b, spacing, 2.0 * sigma_mm(detail) + max(spacing))
    edges_b = source_edges(source_b, spacing, detail, thresholds, region=region, cancel=cancel)
    return edge_labels(edges_a, edges_b)
