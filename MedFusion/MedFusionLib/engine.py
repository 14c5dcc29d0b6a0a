"""The fusion engine: two co-registered volumes in, one fused volume (and an edge labelmap) out.

Data flow: validate -> map each source to [0, 1] on its own grid (a colour source is split into Y and CbCr)
-> resample B onto A's grid in physical space -> slice along the anatomical axis -> run the method batch by
batch on the device -> reassemble in A's geometry (origin, spacing, direction untouched).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import SimpleITK as sitk

from . import colour, edges as edge_maps
from .errors import Cancelled, InputError
from .geometry import overlap_fraction, resample_onto, same_grid, slice_layout
from .intensity import Window, apply_window, choose_window, parse_preset
from .methods import REGISTRY
from .volume_io import check_image

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]
DEFAULT_BATCH = {"cpu": 8, "cuda": 32}
_OUTSIDE = -1.0  # resampling sentinel: normalised values are >= 0, so this marks "outside B's field of view"


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
    windows: Dict[str, Window]
    colour_source: Optional[str] = None  # "A" or "B" when the YCbCr path was used
    warnings: List[str] = field(default_factory=list)
    # With return_sources=True: what the method saw, as float32 [0, 1] images in A's geometry: A normalised
    # (its luma Y if colour) and B normalised and resampled onto A's grid (0 outside B's field of view).
    sources: Optional[Tuple[sitk.Image, sitk.Image]] = None

    def summary(self) -> str:
        kind = "RGB " if self.colour_source else ""
        return (f"{self.method} on {self.device}: {self.slices} {self.axis} slice(s) in {self.seconds:.2f} s, "
                f"overlap {100 * self.overlap:.1f}%, {kind}output in the reference geometry")


@dataclass
class _Source:
    """One input mapped to [0, 1] on its own grid; ``chroma`` holds CbCr for a colour source."""
    luma: sitk.Image
    chroma: Optional[sitk.Image]
    window: Window


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


def _warn(warnings: List[str], message: str) -> None:
    log.warning(message)
    warnings.append(message)


def _prepare_source(image: sitk.Image, preset, name: str, warnings: List[str]) -> _Source:
    array = sitk.GetArrayFromImage(image)  # a copy: the caller's image is never touched
    if image.GetNumberOfComponentsPerPixel() == 3 and colour.has_chroma(np.nan_to_num(array)):
        if parse_preset(preset).kind != "auto":
            _warn(warnings, f"'{name}' is a colour image: its intensity preset is ignored (RGB is used as is).")
        rgb = np.nan_to_num(array.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if (image.GetPixelID() == sitk.sitkVectorUInt8 or rgb.max() > 1.0) else 1.0
        ycbcr = colour.rgb_to_ycbcr(np.clip(rgb / scale, 0.0, 1.0))
        luma = sitk.GetImageFromArray(ycbcr[..., 0])
        chroma = sitk.GetImageFromArray(ycbcr[..., 1:], isVector=True)
        luma.CopyInformation(image)
        chroma.CopyInformation(image)
        return _Source(luma, chroma, Window(0.0, scale, "colour: BT.601 luma Y of RGB"))
    if array.ndim == image.GetDimension() + 1:  # RGB without chroma: a grey image stored as RGB
        array = array[..., 0]
    window = choose_window(array, preset, name, eight_bit=array.dtype == np.uint8)
    normalised, n_bad = apply_window(array, window)
    if n_bad:
        _warn(warnings, f"'{name}': {n_bad} voxel(s) ({100.0 * n_bad / array.size:.2g}%) are NaN or infinite; "
                        f"they are treated as background (0).")
    luma = sitk.GetImageFromArray(normalised)
    luma.CopyInformation(image)
    return _Source(luma, None, window)


def _onto_reference(source: _Source, reference: sitk.Image, names, warnings: List[str]):
    """B's luma (and chroma) on A's grid, plus the mask of A voxels inside B's field of view."""
    if same_grid(source.luma, reference):
        luma = sitk.GetArrayFromImage(source.luma)
        chroma = None if source.chroma is None else sitk.GetArrayFromImage(source.chroma)
        return luma, chroma, np.ones(luma.shape, dtype=bool), 1.0
    luma = sitk.GetArrayFromImage(resample_onto(source.luma, reference, _OUTSIDE))
    inside = luma >= 0.0
    overlap = overlap_fraction(inside)
    if overlap == 0.0:
        raise InputError(f"'{names[0]}' and '{names[1]}' do not overlap in physical space; check that they "
                         f"share a frame of reference (origin, spacing, direction).")
    luma[~inside] = 0.0
    chroma = None
    if source.chroma is not None:
        chroma = sitk.GetArrayFromImage(resample_onto(source.chroma, reference, 0.5))
        chroma[~inside] = 0.5  # neutral chroma: no colour where B has no data
    if overlap < 1.0:
        _warn(warnings, f"Only {100 * overlap:.1f}% of '{names[0]}' lies inside the field of view of "
                        f"'{names[1]}'; '{names[1]}' is 0 elsewhere.")
    return luma, chroma, inside, overlap


def _inside_for_edges(inside_slices: np.ndarray) -> np.ndarray:
    """Shrink B's field-of-view mask by 2 pixels so its own border is not reported as an edge of B."""
    import cv2

    kernel = np.ones((3, 3), np.uint8)
    return np.stack([cv2.erode(s.astype(np.uint8), kernel, iterations=2) > 0 for s in inside_slices])


def _is_out_of_memory(error: BaseException) -> bool:
    import torch

    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


def fuse_volumes(a: sitk.Image, b: sitk.Image, method: str = "average", axis: str = "axial",
                 preset_a="auto", preset_b="auto", device: str = "auto", batch_size: Optional[int] = None,
                 edges: bool = True, edge_thresholds=None, method_options: Optional[dict] = None,
                 progress: Optional[ProgressFn] = None, cancel: Optional[CancelFn] = None,
                 name_a: str = "A", name_b: str = "B", return_sources: bool = False) -> FusionResult:
    """Fuse B into A's geometry with ``method``; see the module docstring for the steps.

    ``progress(done, total)`` is called after every batch of slices; ``cancel()`` is polled before every
    batch and raises :class:`Cancelled` when it returns True. Inputs are never modified.
    ``return_sources=True`` also returns the two normalised sources the method saw (``result.sources``),
    e.g. to score the fusion against them.
    """
    import torch

    started = time.perf_counter()
    warnings: List[str] = []
    for image, name in ((a, name_a), (b, name_b)):
        if image is None:
            raise InputError(f"Input '{name}' is missing.")
        check_image(image, name)
    if a.GetDimension() != b.GetDimension():
        kinds = {2: "a 2D image", 3: "a 3D volume"}
        raise InputError(f"'{name_a}' is {kinds[a.GetDimension()]} and '{name_b}' is {kinds[b.GetDimension()]}; "
                         f"fuse two volumes or two images.")
    info = REGISTRY.get(method)
    layout = slice_layout(a, axis)
    thresholds = edge_maps.validate_thresholds(edge_thresholds)
    for preset in (preset_a, preset_b):
        parse_preset(preset)
    dev = resolve_device(device)
    batch = DEFAULT_BATCH.get(dev.type, 8) if batch_size is None else int(batch_size)
    if batch < 1:
        raise InputError(f"Batch size must be at least 1, not {batch_size}.")
    fuse_fn = info.build(dev, **(method_options or {}))

    src_a = _prepare_source(a, preset_a, name_a, warnings)
    src_b = _prepare_source(b, preset_b, name_b, warnings)
    if src_a.chroma is not None and src_b.chroma is not None:
        raise InputError(f"'{name_a}' and '{name_b}' are both colour images; MedFusion fuses one colour "
                         f"(functional) image with a grey (anatomical) one.")
    luma_a = sitk.GetArrayFromImage(src_a.luma)
    luma_b, chroma_b, inside, overlap = _onto_reference(src_b, a, (name_a, name_b), warnings)
    chroma = sitk.GetArrayFromImage(src_a.chroma) if src_a.chroma is not None else chroma_b
    colour_source = "A" if src_a.chroma is not None else ("B" if chroma_b is not None else None)

    # (S, H, W) views along the anatomical axis, every slice in the same anatomical orientation.
    stack_a, stack_b, stack_inside = (layout.to_slices(x) for x in (luma_a, luma_b, inside))
    n_slices = stack_a.shape[0]
    fused_stack = np.empty(stack_a.shape, dtype=np.float32)
    label_stack = np.zeros(stack_a.shape, dtype=np.uint8) if edges else None
    if edges:
        thresholds_a = thresholds or edge_maps.auto_thresholds(stack_a)
        thresholds_b = thresholds or edge_maps.auto_thresholds(stack_b)

    start = 0
    with torch.inference_mode():
        while start < n_slices:
            if cancel is not None and cancel():
                raise Cancelled("Fusion was cancelled; nothing was written.")
            end = min(n_slices, start + batch)
            try:
                ta = torch.from_numpy(np.ascontiguousarray(stack_a[start:end])).unsqueeze(1).to(dev)
                tb = torch.from_numpy(np.ascontiguousarray(stack_b[start:end])).unsqueeze(1).to(dev)
                fused = fuse_fn(ta, tb).float().clamp_(0.0, 1.0)[:, 0].cpu().numpy()
            except RuntimeError as error:
                if dev.type != "cuda" or not _is_out_of_memory(error):
                    raise
                del error
                torch.cuda.empty_cache()
                if batch > 1:
                    batch //= 2
                    _warn(warnings, f"GPU out of memory: batch size reduced to {batch}.")
                else:
                    dev = torch.device("cpu")
                    fuse_fn = info.build(dev, **(method_options or {}))
                    _warn(warnings, "GPU out of memory even with one slice per batch: continuing on the CPU.")
                continue
            fused_stack[start:end] = fused
            if edges:
                edges_a = edge_maps.canny(stack_a[start:end], thresholds_a)
                edges_b = edge_maps.canny(stack_b[start:end], thresholds_b) & _inside_for_edges(stack_inside[start:end])
                label_stack[start:end] = edge_maps.edge_labels(edges_a, edges_b)
            start = end
            if progress is not None:
                progress(end, n_slices)

    fused_array = np.ascontiguousarray(layout.from_slices(fused_stack))
    if chroma is not None:
        rgb = colour.ycbcr_to_rgb(np.concatenate([fused_array[..., np.newaxis], chroma], axis=-1))
        fused_image = sitk.GetImageFromArray(np.rint(rgb * 255.0).astype(np.uint8), isVector=True)
    else:
        fused_image = sitk.GetImageFromArray(fused_array)
    fused_image.CopyInformation(a)
    edges_image = None
    if edges:
        edges_image = sitk.GetImageFromArray(np.ascontiguousarray(layout.from_slices(label_stack)))
        edges_image.CopyInformation(a)
    sources = None
    if return_sources:
        sources = (sitk.GetImageFromArray(luma_a), sitk.GetImageFromArray(luma_b))
        for source in sources:
            source.CopyInformation(a)

    return FusionResult(
        fused=fused_image, edges=edges_image, method=info.name, device=str(dev), axis=axis.strip().lower(),
        slices=n_slices, seconds=time.perf_counter() - started, overlap=overlap, batch_size=batch,
        windows={"A": src_a.window, "B": src_b.window}, colour_source=colour_source, warnings=warnings,
        sources=sources)
