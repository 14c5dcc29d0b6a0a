"""The fusion engine: two co-registered volumes in, one fused volume (and an edge labelmap) out.

Data flow: validate -> decide each source's mapping to [0, 1] (window, or YCbCr for a colour source) ->
for each batch of slices along the anatomical axis: window A's slab, resample B onto the slab's sub-grid
of A in physical space, run the method on the device, write the result into the output through the same
slice layout -> the output has A's geometry (origin, spacing, direction untouched).
Before the loop, B's residual shift against A is estimated (registration_check.py); after it, the edge
overlay is computed in 3D (edge_overlay.py).

Memory stays at the inputs, the output and one batch: no volume-sized intermediate is ever made, except that
SimpleITK copies the finished output array into the returned image (it cannot wrap a numpy buffer), so the
output is held twice for a moment at the end. Measured with ``scripts/benchmark.py --memory``: a 512 x 512 x 600
int16 pair (B on another grid), 453 MB of inputs, peak RSS 2.2 GB including the interpreter and torch.
That measurement predates the 3D edge overlay, which keeps the two normalised sources as uint8 volumes and,
while it runs after the loop, one float32 volume, a distance map and a few masks: on sts_001's CT resampled
to 28 M voxels with its MR, peak RSS 1.36 GB with edges against 0.83 GB without (about 19 bytes per voxel).
"""
from __future__ import annotations

import concurrent.futures
import functools
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import SimpleITK as sitk

from . import advice, anatomy_crop, edge_overlay, edges as edge_maps, field_of_view, functional_colour, heap
from .api_checks import check_2d_pair, check_images_and_callbacks
from .errors import Cancelled, InputError, MethodOutputError, ResourceError
from .geometry import fields_of_view_may_overlap, slice_layout
from .intensity import Window
from .methods import REGISTRY
from .methods.base import NonFiniteOutput
from .registration_check import check_registration as estimate_misalignment
from .settings import FusionSettings
from .sources import MovingSlabs, ReferenceSlabs, Source
from .volume_io import check_image

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]
DEFAULT_BATCH = {"cpu": 8, "cuda": 32}
_BACKGROUND = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="medfusion-check")


@dataclass
class FusionResult:
    fused: sitk.Image  # float32 in [0, 1], or RGB uint8 when a colour source was fused; A's geometry
    edges: Optional[sitk.Image]  # uint8 labelmap (1 = A, 2 = B, 3 = both) in A's geometry, or None
    method: str
    device: str
    axis: str
    slices: int
    seconds: float
    overlap: float  # fraction of A's voxels inside B's field of view
    batch_size: int
    precision: str  # what the method ran in: fp32, bf16 or fp16 (see acceleration.py)
    windows: Dict[str, Window]
    colour_source: Optional[str] = None  # "A" or "B" when a colour (functional) source was fused: RGB output
    colour_mode: Optional[str] = None  # with a colour source: "ycbcr" or "overlay" (functional_colour.py)
    warnings: List[str] = field(default_factory=list)
    # With return_sources=True: what the method saw, as float32 [0, 1] images in A's geometry: A normalised
    # (its luma Y if colour) and B resampled onto A (0 outside B's field of view).
    sources: Optional[Tuple[sitk.Image, sitk.Image]] = None
    # B's estimated residual shift against A in mm (registration_check.py); None when not checked (2D, skipped)
    # or when the check cannot tell (too little overlap or common structure, the best shift at the edge of the
    # plausible range, or above the threshold without a significant metric gain).
    registration_offset_mm: Optional[float] = None

    def summary(self) -> str:
        kind = "RGB " if self.colour_source else ""
        precision = "" if self.precision == "fp32" else f" ({self.precision})"
        return (f"{self.method} on {self.device}{precision}: {self.slices} {self.axis} slice(s) in {self.seconds:.2f} s, "
                f"overlap {100 * self.overlap:.1f}%, {kind}output in the reference geometry")


def resolve_device(device: str = "auto"):
    import torch

    key = (device or "auto").strip().lower()
    if key == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if key == "cpu":
        return torch.device("cpu")
    if key.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError("CUDA was requested but torch sees no GPU; use --device cpu or auto.")
        try:
            dev = torch.device(key)
        except RuntimeError:
            raise InputError(f"Unknown device '{device}'; use auto, cpu or cuda[:N].") from None
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"GPU {dev.index} does not exist; torch sees {torch.cuda.device_count()} GPU(s).")
        return dev
    raise InputError(f"Unknown device '{device}'; use auto, cpu or cuda[:N].")


def _is_out_of_memory(error: BaseException) -> bool:
    import torch

    text = str(error).lower()
    return (isinstance(error, (MemoryError, torch.cuda.OutOfMemoryError)) or "out of memory" in text
            or "can't allocate memory" in text or "failed to allocate" in text or "bad_alloc" in text
            # oneDNN's answer when it cannot allocate a convolution's workspace (seen under a memory limit)
            or "could not create a primitive" in text)


_CPU_OUT_OF_MEMORY = ("Out of memory on the CPU even with one slice per batch; close other programs or fuse a "
                      "smaller (cropped) volume. Nothing was written.")


def _memory_errors_in_one_sentence(fuse):
    """Out of memory outside the batch loop (allocating the output, copying it into an image) is one sentence."""
    @functools.wraps(fuse)
    def wrapper(*args, **kwargs):
        try:
            return fuse(*args, **kwargs)
        except MemoryError as error:
            if isinstance(error, ResourceError):
                raise
            raise ResourceError(_CPU_OUT_OF_MEMORY.replace(" even with one slice per batch", "")) from None
    return wrapper


def _after_out_of_memory(dev, batch: int, method, warnings: List[str]):
    """The device and batch size to retry with: half the batch, then (GPU, one slice) the same method moved to
    the CPU; ResourceError when the CPU runs out with one slice."""
    import torch

    if dev.type == "cuda":
        torch.cuda.empty_cache()
    if batch > 1:
        batch //= 2
        warnings.append(f"{'GPU' if dev.type == 'cuda' else 'CPU'} out of memory: batch size reduced to {batch}.")
    elif dev.type != "cuda":
        raise ResourceError(_CPU_OUT_OF_MEMORY) from None
    else:
        dev = torch.device("cpu")
        method.to(dev)  # the same loaded method, moved: nothing is rebuilt
        warnings.append("GPU out of memory even with one slice per batch: continuing on the CPU.")
    return dev, batch


def _check_inputs(a, b, name_a, name_b) -> None:
    for image, name in ((a, name_a), (b, name_b)):
        if image is None:
            raise InputError(f"Input '{name}' is missing.")
        check_image(image, name)
    if a.GetDimension() != b.GetDimension():
        kinds = {2: "a 2D image", 3: "a 3D volume"}
        raise InputError(f"'{name_a}' is {kinds[a.GetDimension()]} and '{name_b}' is {kinds[b.GetDimension()]}; "
                         f"fuse two volumes or two images.")
    check_2d_pair(a, b, name_a, name_b)


def _no_overlap(name_a: str, name_b: str) -> InputError:
    return InputError(f"'{name_a}' and '{name_b}' do not overlap in physical space; check that they share a "
                      f"frame of reference (origin, spacing, direction).")


@_memory_errors_in_one_sentence
def fuse_volumes(a: sitk.Image, b: sitk.Image, method: str = "average", axis: str = "axial",
                 preset_a="auto", preset_b="auto", device: str = "auto", batch_size: Optional[int] = None,
                 edges: bool = True, edge_thresholds=None, method_options: Optional[dict] = None,
                 progress: Optional[ProgressFn] = None, cancel: Optional[CancelFn] = None,
                 name_a: str = "A", name_b: str = "B", colormap_a=None, colormap_b=None,
                 return_sources: bool = False, precision: str = "auto", compile: bool = False,
                 colour_mode: str = "auto", edge_detail: Optional[float] = None,
                 check_registration: bool = True, crop_to_anatomy: bool = True) -> FusionResult:
    """Fuse B into A's geometry with ``method``; see the module docstring for the steps.

    ``colormap_a`` / ``colormap_b`` colour a scalar functional source (a matplotlib name such as ``hot``, or an
    (N, 3) table): it is windowed by its preset, coloured, and fused through YCbCr like an RGB PET, giving RGB.
    ``colour_mode`` (auto, ycbcr, overlay) says how the functional colour is shown (functional_colour.py):
    ``auto`` overlays luminance-encoded maps (hot, PET-Heat) on the grey fusion and fuses hue-encoded ones
    (rainbow, RGB pseudo-colour images) through YCbCr; ``result.colour_mode`` says which was used.
    ``return_sources=True`` also returns the two normalised sources the method saw (``result.sources``), e.g.
    to score the fusion against them (two more volume-sized float arrays: for evaluation, not for clinics).

    ``precision`` (auto, fp32, bf16, fp16, int8) and ``compile`` (torch.compile, falls back silently) apply to networks;
    see acceleration.py for the policy and the accuracy guard behind ``auto``.

    Edges (``edges=True``) are 3D Canny edges of the two normalised sources, computed after the fusion loop on
    copies the loop keeps: two uint8 volumes (float32 with ``return_sources``); see edge_overlay.py.
    ``edge_detail`` in [0, 1] (None: 0.5) asks for fewer or more of them; ``edge_thresholds=(low, high)``
    fixes them (normalised intensity per mm of the smoothed source).

    ``check_registration`` first estimates B's residual shift against A (registration_check.py, 1-3 s);
    above max(3 mm, one voxel of B), with a significant metric gain, a warning says by how much and what to do.

    ``crop_to_anatomy`` runs the method only where either source has data (anatomy_crop.py; the same result
    to 1e-6); False runs every batch whole.

    ``progress(done, total)`` is called after every batch of slices; ``cancel()`` is polled before every
    batch and raises :class:`Cancelled` when it returns True. Inputs are never modified.
    """
    check_images_and_callbacks(a, b, progress, cancel)
    settings = FusionSettings.create(
        method=method, axis=axis, preset_a=preset_a, preset_b=preset_b, device=device, batch_size=batch_size,
        edges=edges, edge_thresholds=edge_thresholds, method_options=method_options or {}, name_a=name_a,
        name_b=name_b, colormap_a=colormap_a, colormap_b=colormap_b, return_sources=return_sources,
        precision=precision, compile=compile, colour_mode=colour_mode, edge_detail=edge_detail,
        check_registration=check_registration, crop_to_anatomy=crop_to_anatomy)
    return fuse(a, b, settings, progress, cancel)


@_memory_errors_in_one_sentence
def fuse(a: sitk.Image, b: sitk.Image, settings: FusionSettings, progress: Optional[ProgressFn] = None,
         cancel: Optional[CancelFn] = None) -> FusionResult:
    """The engine proper: fuse B into A's geometry under ``settings``, already checked by
    ``FusionSettings.create`` (every front door makes them; :func:`fuse_volumes` is the keyword one)."""
    import torch

    started = time.perf_counter()
    warnings: List[str] = []
    name_a, name_b, axis, edges = settings.name_a, settings.name_b, settings.axis, settings.edges
    return_sources, colour_mode = settings.return_sources, settings.colour_mode
    _check_inputs(a, b, name_a, name_b)
    info = REGISTRY.get(settings.method)
    layout = slice_layout(a, axis)
    thresholds, detail = settings.edge_thresholds, settings.edge_detail
    dev = resolve_device(settings.device)
    batch = DEFAULT_BATCH.get(dev.type, 8) if settings.batch_size is None else settings.batch_size
    if not fields_of_view_may_overlap(a, b):
        raise _no_overlap(name_a, name_b)
    # The registration check runs beside the fusion: it is mostly single-threaded SimpleITK work that releases
    # the GIL (stroke T1/T2: 0.6 s alone; beside 3 s of convolutions it added 0.29 s instead, in a probe).
    registration_offset, registration_at = None, len(warnings)
    checking = _BACKGROUND.submit(estimate_misalignment, a, b, 1) if settings.check_registration else None
    method = info.load(dev, settings.method_options, settings.precision, settings.compile)
    margin = info.margin(settings.method_options)
    cropped = anatomy_crop.AnatomyCrop(method, dev, margin, settings.crop_to_anatomy)

    src_a = Source(a, settings.preset_a, name_a, warnings, colormap=settings.colormap_a, colour_mode=colour_mode)
    src_b = Source(b, settings.preset_b, name_b, warnings, colormap=settings.colormap_b, colour_mode=colour_mode)
    if src_a.is_colour and src_b.is_colour:
        raise InputError(f"'{name_a}' and '{name_b}' are both colour images; MedFusion fuses one colour "
                         f"(functional) image with a grey (anatomical) one.")
    warnings += advice.about_inputs(a, b, src_a.is_colour, src_b.is_colour, name_a, name_b)
    reference, moving = ReferenceSlabs(src_a, layout), MovingSlabs(src_b, a, layout)
    colour_source = "A" if src_a.is_colour else ("B" if src_b.is_colour else None)

    # Outputs are written in place through the slice layout's views: no second volume-sized copy.
    shape = sitk.GetArrayViewFromImage(a).shape[: a.GetDimension()]
    fused_array = np.zeros(shape + ((3,) if colour_source else ()), np.uint8 if colour_source else np.float32)
    fused_stack = layout.to_slices(fused_array)
    n_slices = fused_stack.shape[0]
    # What the method saw, kept for the 3D edges (8-bit is enough for them) and for return_sources.
    kept_type = np.float32 if return_sources else np.uint8
    source_arrays = (np.zeros(shape, kept_type), np.zeros(shape, kept_type)) if edges or return_sources else None
    keep = (lambda luma: luma) if return_sources else edge_maps.to_uint8

    inside_voxels, start = 0, 0
    with torch.inference_mode(), heap.reused_heap():
        while start < n_slices:
            if cancel is not None and cancel():
                raise Cancelled("Fusion was cancelled; nothing was written.")
            end = min(n_slices, start + batch)
            try:
                slab_a, slab_b = reference.slab(start, end), moving.slab(start, end)
                luma_b = field_of_view.method_input_b(slab_a.luma, slab_b.luma, slab_b.inside)
                fused = cropped(slab_a.luma, luma_b)[:, 0].cpu().numpy()
            except NonFiniteOutput as error:
                raise MethodOutputError(f"{error} on slices {start + 1}-{end}; the result is refused and nothing "
                                        f"was written.") from None
            except (RuntimeError, MemoryError) as error:
                if not _is_out_of_memory(error):
                    raise
                del error
                luma_b = slab_a = slab_b = fused = None  # free the failed batch before retrying
                dev, batch = _after_out_of_memory(dev, batch, method, warnings)
                cropped = anatomy_crop.AnatomyCrop(method, dev, margin, settings.crop_to_anatomy)  # new device
                continue
            # Where only A has data, A passes through unchanged, fading in the fusion across B's border.
            weight = field_of_view.slab_weight(moving, start, end, slab_b.inside)
            fused = field_of_view.blend_to_reference(fused, slab_a.luma, weight)
            if colour_source:
                rgb = (functional_colour.compose(fused, slab_a) if colour_source == "A"
                       else functional_colour.compose(fused, slab_b, weight))  # B's colour fades in with it
                fused_stack[start:end] = np.rint(rgb * 255.0).astype(np.uint8)
            else:
                fused_stack[start:end] = fused
            inside_voxels += slab_b.inside.sum() if slab_b.inside is not None else slab_b.luma.size
            if source_arrays is not None:
                layout.to_slices(source_arrays[0])[start:end] = keep(slab_a.luma)
                layout.to_slices(source_arrays[1])[start:end] = keep(slab_b.luma)
            start = end
            if progress is not None:
                progress(end, n_slices)

    found = checking.result() if checking is not None else None
    if found is not None:
        registration_offset = found.reported_mm  # None: the check cannot tell
        if found.misaligned:
            warnings.insert(registration_at, found.warning(name_a, name_b))
    overlap = float(inside_voxels) / float(np.prod(shape))
    if overlap == 0.0:
        raise _no_overlap(name_a, name_b)
    warnings += advice.about_overlap(overlap, name_a, name_b)
    for message in warnings:
        log.warning(message)

    fused_image = sitk.GetImageFromArray(fused_array, isVector=colour_source is not None)
    del fused_array, fused_stack  # the image holds its own copy
    fused_image.CopyInformation(a)
    edges_image = None
    if edges:
        region_b = None if moving.same_grid else edge_overlay.b_edge_region(b, a, detail)
        edge_sources = list(source_arrays)
        if not return_sources:
            source_arrays = None  # the overlay then lets go of each source once used: a lower peak
        label_array = edge_overlay.edge_overlay(edge_sources, a.GetSpacing()[::-1], region_b, detail, thresholds,
                                                cancel)
        edges_image = sitk.GetImageFromArray(label_array)
        edges_image.CopyInformation(a)
    sources = None
    if return_sources:
        sources = tuple(sitk.GetImageFromArray(array) for array in source_arrays)
        for source in sources:
            source.CopyInformation(a)

    return FusionResult(
        fused=fused_image, edges=edges_image, method=info.name, device=str(dev), axis=axis,
        slices=n_slices, seconds=time.perf_counter() - started, overlap=overlap, batch_size=batch,
        precision=method.precision,
        windows={"A": src_a.window, "B": src_b.window}, colour_source=colour_source,
        colour_mode=(src_a if colour_source == "A" else src_b).colour_mode if colour_source else None,
        warnings=warnings, sources=sources, registration_offset_mm=registration_offset)
