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

Memory: the smoothing runs in blocks along the slowest array axis (with a halo of 4 sigma), the gradient and
the suppression in sub-blocks of about 4 M voxels; what is volume-sized is one float32 map of suppressed
magnitudes (freed before the hysteresis) and a few uint8 / bool masks; B's field of view is computed a few rows
at a time. Measured on sts_001's CT resampled to 512 x 512 x 300 (78.6 M voxels) with its MR: 21.5 s and 0.58 GB
above the fusion's own peak, on 2 cores (scripts/benchmark.py --workloads clinical,clinical-noedges).
"""
from __future__ import annotations

import itertools
import math
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from . import heap
from .edges import edge_labels
from .errors import Cancelled
from .geometry import index_map, index_matrix
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


def _smoothed(block: np.ndarray, spacing: Sequence[float], sigma: float) -> np.ndarray:
    """The block smoothed by ``sigma`` mm: one recursive Gaussian (ndim passes). Axes shorter than 4 are padded
    (ITK's recursive filter needs 4 samples)."""
    pad = [(0, max(0, 4 - n)) for n in block.shape]
    padded = np.pad(block, pad, mode="edge") if any(p[1] for p in pad) else block
    image = sitk.GetImageFromArray(padded)
    image.SetSpacing(tuple(float(s) for s in spacing[::-1]))  # array axes [k, j, i] -> image axes (i, j, k)
    smooth = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(image, sigma))
    return smooth[tuple(slice(0, n) for n in block.shape)]


def _gradient(smooth: np.ndarray, spacing: Sequence[float], rows: slice) -> Tuple[np.ndarray, ...]:
    """Gradient per mm (central differences) of ``smooth`` at its rows ``rows`` (axis 0): one contiguous
    float32 array per array axis.

    Central differences on a Gaussian-smoothed block: a third of the time of a Gaussian derivative per axis.
    One array per axis, not one (..., ndim) array: element-wise work on contiguous planes is vectorised,
    reductions over a trailing axis of 3 are not (they were 40% of the suppression's time in a profile).
    """
    # One row more on each side where there is one, so that the rows asked for get central differences (the
    # block's own first and last rows keep numpy's one-sided ones).
    first, last = max(0, rows.start - 1), min(smooth.shape[0], rows.stop + 1)
    part, inner = smooth[first:last], slice(rows.start - first, rows.stop - first)
    return tuple(np.gradient(part, float(step), axis=axis)[inner].astype(np.float32, copy=False)
                 if part.shape[axis] > 1 else np.zeros(part[inner].shape, np.float32)
                 for axis, step in enumerate(spacing))


def _suppress(gradient: Sequence[np.ndarray], spacing: Sequence[float]) -> np.ndarray:
    """Gradient magnitude where it is a maximum along the gradient direction, else 0 (float32).

    ``gradient``: one array per axis (see _gradient). Only voxels above the weakest possible low threshold are
    looked at (most of a volume is flat), each against its two neighbours along the gradient, found by flat
    index in the zero-padded magnitude.
    """
    squares = gradient[0] * gradient[0]
    for component in gradient[1:]:
        squares += component * component  # ((g0^2 + g1^2) + g2^2), the order of a float32 sum over the axes
    magnitude = np.sqrt(squares, out=squares)
    out = np.zeros(magnitude.shape, np.float32)
    flat = magnitude.reshape(-1)
    candidates = np.flatnonzero(flat > NMS_FLOOR).astype(np.int32)  # chunks stay far below 2**31 voxels
    if candidates.size == 0:
        return out
    steps = [component.reshape(-1)[candidates] / np.float32(step) for component, step in zip(gradient, spacing)]
    largest = np.abs(steps[0])
    for s in steps[1:]:
        np.maximum(largest, np.abs(s), out=largest)
    offsets = [np.rint(s / largest).astype(np.int32) for s in steps]  # voxel steps toward the gradient
    first = offsets[-1]
    for o in offsets[-2::-1]:
        first = np.where(o != 0, o, first)  # the first non-zero step, in axis order
    flip = first < 0
    for o in offsets:  # one sign per direction: ties break the same way
        np.negative(o, out=o, where=flip)
    padded = np.pad(magnitude, 1)
    strides = (np.asarray(padded.strides) // padded.itemsize).astype(np.int32)
    centre = sum((c + 1) * stride for c, stride in zip(np.unravel_index(candidates, magnitude.shape), strides))
    step = sum(o * stride for o, stride in zip(offsets, strides))
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

    ``spacing`` in array-axis order (mm). Computed in blocks along axis 0: each block is smoothed with a halo
    of 4 sigma, then suppressed in sub-blocks of about _CHUNK_VOXELS. Blocks are at least 4 halos long, so
    that the halo is not most of the smoothing (it was 2 x 11 slices around 15 on 512 x 512 slices), and the
    sub-blocks keep the suppression's per-voxel arrays small. (Sub-blocks on two threads measured no faster.)
    """
    scale = 1.0 / 255.0 if volume.dtype == np.uint8 else 1.0
    out = np.zeros(volume.shape, np.float32)
    per_slice = max(1, int(np.prod(volume.shape[1:])))
    sub = max(8, _CHUNK_VOXELS // per_slice)
    halo = int(math.ceil(4.0 * sigma / spacing[0])) + 1
    chunk = max(sub, 4 * halo)
    # The blocks' temporaries are alike in size from one block to the next: kept in the heap, they are not
    # faulted in afresh each time (see heap.py). Only here: around the volume-sized arrays the kept memory
    # fragments and raised the overlay's peak by about 0.5 GB on a 512 x 512 x 600 pair.
    with heap.reused_heap():
        for start in range(0, volume.shape[0], chunk):
            if cancel is not None and cancel():
                raise Cancelled("Fusion was cancelled; nothing was written.")
            end = min(volume.shape[0], start + chunk)
            low, high = max(0, start - halo), min(volume.shape[0], end + halo)
            smooth = _smoothed(volume[low:high].astype(np.float32) * np.float32(scale), spacing, sigma)
            for part in range(start, end, sub):
                part_end = min(end, part + sub)
                # The suppression looks one row ahead and behind: the rows asked for and one neighbour each side.
                near = slice(max(low, part - 1) - low, min(high, part_end + 1) - low)
                kept = slice(part - low - near.start, part_end - low - near.start)
                out[part:part_end] = _suppress(_gradient(smooth, spacing, near), spacing)[kept]
            del smooth
    return out


def _masks(suppressed: np.ndarray, low: float, high: float) -> Tuple[sitk.Image, sitk.Image]:
    """The hysteresis inputs as ITK images: (weak = voxels >= ``low``, strong = voxels >= ``high``), each passed
    as a uint8 view of numpy's bools (one volume-sized copy, not two)."""
    return (sitk.GetImageFromArray((suppressed >= low).view(np.uint8)),
            sitk.GetImageFromArray((suppressed >= high).view(np.uint8)))


def _reconstructed(weak: sitk.Image, strong: sitk.Image) -> np.ndarray:
    """Weak voxels connected (26-neighbours) to a strong one, as bools."""
    kept = sitk.BinaryReconstructionByDilation(strong, weak, backgroundValue=0, foregroundValue=1, fullyConnected=True)
    return sitk.GetArrayViewFromImage(kept).astype(bool)


def _hysteresis(suppressed: np.ndarray, low: float, high: float) -> np.ndarray:
    """Voxels >= ``low`` connected (26-neighbours) to a voxel >= ``high``."""
    return _reconstructed(*_masks(suppressed, low, high))


def _search_slab(shape) -> slice:
    per_slice = max(1, int(np.prod(shape[1:])))
    n = min(shape[0], max(1, _SEARCH_VOXELS // per_slice))
    start = (shape[0] - n) // 2
    return slice(start, start + n)


def automatic_thresholds(magnitude: np.ndarray, mask: np.ndarray, share: float) -> Tuple[float, float]:
    """(low, high) so that hysteresis edges cover about ``share`` of the foreground ``mask`` (a bisection), from
    the suppressed magnitudes of the search slab (see _search_slab).

    First as classic Canny, ``low = 0.5 * high``, searching ``high``: a seed then keeps its whole outline, so a
    few clear outlines stay whole. In 3D the maxima surfaces touch one another, and a weak ``low`` connects most
    of them to some seed: when even the strongest ``high`` covers more than the share, ``low`` is searched
    instead, with ``high = low / 0.5`` capped at the 99.5th percentile of the maxima so that a strict ``low``
    still has seeds.
    """
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


RowMask = Callable[[slice], np.ndarray]  # rows (a slice of array axis 0) -> a bool mask of those rows


def source_edges(volume: np.ndarray, spacing: Sequence[float], detail: float = DEFAULT_DETAIL,
                 thresholds: Optional[Tuple[float, float]] = None, region: Optional[RowMask] = None,
                 cancel: Optional[Callable[[], bool]] = None) -> np.ndarray:
    """Boolean 3D (or 2D) Canny edges of one [0, 1] (or uint8) source; ``region`` limits where edges may be
    (asked for a few rows at a time: no volume-sized mask is made)."""
    suppressed = suppressed_magnitude(volume, spacing, sigma_mm(detail), cancel)
    if region is not None:
        step = max(1, _CHUNK_VOXELS // max(1, int(np.prod(volume.shape[1:]))))
        for start in range(0, volume.shape[0], step):
            rows = slice(start, min(volume.shape[0], start + step))
            suppressed[rows][~region(rows)] = 0.0
    if thresholds is None:
        slab = _search_slab(volume.shape)  # the foreground is looked at only where the thresholds are searched
        level = FOREGROUND_LEVEL * (255.0 if volume.dtype == np.uint8 else 1.0)
        foreground = volume[slab] > level
        if region is not None:
            foreground &= region(slab)
        thresholds = automatic_thresholds(suppressed[slab], foreground, edge_share(detail))
        del foreground
    weak, strong = _masks(suppressed, *thresholds)
    del suppressed  # the float32 volume is not needed by the reconstruction: the peak is lower without it
    return _reconstructed(weak, strong)


def b_edge_region(moving: sitk.Image, reference: sitk.Image, detail: float = DEFAULT_DETAIL) -> Optional[RowMask]:
    """Where B's edges may be on the reference grid, as a function of array rows (see RowMask): inside B's
    field of view and more than 2 sigma plus one voxel from its border (the cut where B has no data is not
    anatomy, and the smoothing blurs it over 2 sigma); None when B's field of view holds the whole grid.

    Computed from the geometry, not from a voxel mask: B's field of view is the box of its voxels (continuous
    index -0.5 .. n - 0.5 on each axis), and a point is more than m mm inside a box when it is more than m mm
    from each face's plane (faces that no reference voxel lies beyond are not cuts). A distance map of the
    resampled mask gave the same region up to its voxel steps, with 4 bytes a voxel of temporary and a
    volume-sized mask (on 157 M voxels, 0.8 GB and the overlay's peak). One difference: a face tilted against
    A's axes is a plane here, so near A's border, where the plane passes but the face itself lies outside A,
    it insets a little more than the cut needs (sts_001's MR turned by 6 degrees: 3% of the voxels more than
    the margin plus a voxel from any cut lose B's edges; none for faces parallel to A's axes).
    """
    margin = 2.0 * sigma_mm(detail) + max(reference.GetSpacing())
    dim = reference.GetDimension()
    steps, offset = index_map(moving, reference)  # moving index = steps @ reference index + offset
    # A face's plane {index_k = c} is 1 / |row k of physical -> index| mm from a point one index unit from it.
    inset = margin * np.linalg.norm(np.linalg.inv(index_matrix(moving)), axis=1)
    size = np.asarray(moving.GetSize(), float)
    shape = reference.GetSize()  # (x, y[, z]); array rows run along the last of them
    corners = np.array(list(itertools.product(*[(0, n - 1) for n in shape])), float) @ steps.T + offset
    # A face is a cut only where some reference voxel lies beyond it; one that all of them are inside of (the
    # reference grid is the hull of its corners) is at or past the grid's border, and insets nothing.
    cut_low, cut_high = (corners < -0.5).any(axis=0), (corners > size - 0.5).any(axis=0)
    if not (cut_low.any() or cut_high.any()):
        return None
    low = np.where(cut_low, -0.5 + inset, -np.inf)
    high = np.where(cut_high, size - 0.5 - inset, np.inf)
    # Each moving index over one row's plane (array order), without the row's own term.
    plane = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape[-2::-1]], indexing="ij")
    in_plane = [offset[axis] + sum(steps[axis, d] * plane[dim - 2 - d] for d in range(dim - 1))
                for axis in range(dim)]

    def rows_inside(rows: slice) -> np.ndarray:
        mask = np.ones((rows.stop - rows.start,) + tuple(shape[-2::-1]), bool)
        for row, k in enumerate(range(rows.start, rows.stop)):
            for axis in range(dim):
                if cut_low[axis] or cut_high[axis]:
                    index = in_plane[axis] + steps[axis, dim - 1] * k
                    mask[row] &= (index > low[axis]) & (index < high[axis])
        return mask

    return rows_inside


def edge_overlay(sources: List[Optional[np.ndarray]], spacing: Sequence[float],
                 region_b: Optional[RowMask] = None, detail: float = DEFAULT_DETAIL,
                 thresholds: Optional[Tuple[float, float]] = None,
                 cancel: Optional[Callable[[], bool]] = None) -> np.ndarray:
    """uint8 labelmap (1 = edge of A, 2 = of B, 3 = both) of two sources ``[A, B]`` on one grid (array-axis
    spacing, mm). Each entry of ``sources`` is set to None once its edges are found, so that A's volume is
    gone while B's are (pass a copy of the list to keep them).

    ``region_b``: where B's edges may be on that grid, by rows (:func:`b_edge_region`; None: everywhere).
    """
    edges_a = source_edges(sources[0], spacing, detail, thresholds, cancel=cancel)
    sources[0] = None
    edges_b = source_edges(sources[1], spacing, detail, thresholds, region=region_b, cancel=cancel)
    sources[1] = None
    return edge_labels(edges_a, edges_b)
