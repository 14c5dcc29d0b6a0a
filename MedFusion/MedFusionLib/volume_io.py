"""Reading and writing volumes and images with SimpleITK, with clear errors and atomic writes.

Readable: NRRD (.nrrd/.nhdr), NIfTI (.nii/.nii.gz), MetaImage (.mha/.mhd), a folder holding a DICOM series,
and 2D images (.png/.tif/.tiff/.jpg/.bmp). Volumes are 3D scalar or 3D RGB; images are 2D grey or RGB.
Writes go to a temporary file next to the target and are renamed into place only when complete, so a failed
or cancelled run never leaves a partial file.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import List, Optional

import numpy as np
import SimpleITK as sitk

from .errors import InputError

log = logging.getLogger(__name__)

VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
FORMATS_HELP = "NRRD, NIfTI, MHA/MHD, a DICOM series folder, or a PNG/TIFF image"


def suffix_of(path) -> str:
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def display_name(path) -> str:
    """A short name for messages and output nodes: the file name without its volume suffix."""
    p = Path(path)
    name = p.name
    suffix = suffix_of(p)
    return name[: -len(suffix)] if suffix and name.lower().endswith(suffix) else name


def read_volume(path, warnings: Optional[List[str]] = None) -> sitk.Image:
    """Read a 3D volume or 2D image; raises InputError with one sentence when it cannot."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"File '{path}' does not exist.")
    if p.is_dir():
        image = _read_dicom_series(p, warnings)
    else:
        try:
            image = sitk.ReadImage(str(p))
        except RuntimeError:
            raise InputError(f"Cannot read '{path}': it is not a readable {FORMATS_HELP}.") from None
    check_image(image, display_name(p))
    return image


def _read_dicom_series(folder: Path, warnings: Optional[List[str]]) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InputError(f"Folder '{folder}' contains no DICOM series.")
    files_by_series = {sid: reader.GetGDCMSeriesFileNames(str(folder), sid) for sid in series}
    chosen = max(series, key=lambda sid: len(files_by_series[sid]))
    if len(series) > 1:
        message = (f"Folder '{folder}' holds {len(series)} DICOM series; using the largest "
                   f"({len(files_by_series[chosen])} files, series {chosen}).")
        log.warning(message)
        if warnings is not None:
            warnings.append(message)
    reader.SetFileNames(files_by_series[chosen])
    try:
        return reader.Execute()
    except RuntimeError:
        raise InputError(f"Cannot read the DICOM series in '{folder}'.") from None


def check_image(image: sitk.Image, name: str) -> None:
    """Reject what MedFusion cannot fuse, with the reason in one sentence."""
    dim = image.GetDimension()
    if dim not in (2, 3):
        raise InputError(f"Volume '{name}' has {dim} dimensions; MedFusion fuses 3D scalar or RGB volumes "
                         f"(or a pair of 2D images).")
    size = image.GetSize()
    if 0 in size:
        raise InputError(f"Volume '{name}' is empty (size {'x'.join(map(str, size))}).")
    components = image.GetNumberOfComponentsPerPixel()
    if components not in (1, 3):
        raise InputError(f"Volume '{name}' has {components} components per voxel; MedFusion fuses scalar or "
                         f"RGB (3-component) volumes.")
    if image.GetPixelID() in (sitk.sitkComplexFloat32, sitk.sitkComplexFloat64):
        raise InputError(f"Volume '{name}' holds complex numbers; MedFusion fuses real-valued volumes.")


def check_output_path(path, dimension: int) -> Path:
    """Fail before any work if ``path`` cannot be written or has a suffix we cannot write for this data."""
    p = Path(path)
    suffix = suffix_of(p)
    allowed = VOLUME_SUFFIXES if dimension == 3 else VOLUME_SUFFIXES + IMAGE_SUFFIXES
    if suffix not in allowed:
        kind = "a 3D volume" if dimension == 3 else "a 2D image"
        raise InputError(f"Cannot write {kind} to '{path}'; use one of: {', '.join(allowed)}.")
    if p.is_dir():
        raise InputError(f"Output path '{path}' is a folder; give a file name.")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"Output folder '{parent}' does not exist.")
    if not _can_create_file_in(parent) or (p.exists() and not os.access(p, os.W_OK)):
        raise InputError(f"Output path '{path}' is not writable.")
    return p


def _can_create_file_in(folder: Path) -> bool:
    # A real probe: os.access says yes to root even where the file system or a security module says no.
    try:
        handle, probe = tempfile.mkstemp(prefix=".medfusion-probe-", dir=folder)
    except OSError:
        return False
    os.close(handle)
    os.unlink(probe)
    return True


def _as_8bit_image(image: sitk.Image) -> sitk.Image:
    """2D image formats hold 8-bit values: float data in [0, 1] is scaled to 0..255."""
    if image.GetPixelID() in (sitk.sitkUInt8, sitk.sitkVectorUInt8):
        return image
    array = sitk.GetArrayFromImage(image).astype(np.float64)
    if array.size and array.max() <= 1.0 + 1e-6:
        array = array * 255.0
    out = sitk.GetImageFromArray(np.clip(np.rint(array), 0, 255).astype(np.uint8),
                                 isVector=image.GetNumberOfComponentsPerPixel() > 1)
    out.CopyInformation(image)
    return out


def write_volume(image: sitk.Image, path, compress: bool = True) -> Path:
    """Write atomically: into a temporary folder beside the target, then rename every produced file."""
    p = check_output_path(path, image.GetDimension())
    if suffix_of(p) in IMAGE_SUFFIXES:
        image = _as_8bit_image(image)
    parent = p.parent if str(p.parent) else Path(".")
    staging = Path(tempfile.mkdtemp(prefix=".medfusion-", dir=parent))
    try:
        staged = staging / p.name
        try:
            sitk.WriteImage(image, str(staged), useCompression=compress and suffix_of(p) != ".png")
        except RuntimeError:
            raise InputError(f"Could not write '{path}'.") from None
        # .mhd and .nhdr write a header plus a data file; move both (the header names the data file).
        for produced in staging.iterdir():
            os.replace(produced, parent / produced.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return p
