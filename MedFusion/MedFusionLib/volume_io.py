"""Reading and writing volumes and images with SimpleITK, with clear errors and atomic writes.

Readable: NRRD (.nrrd/.nhdr), NIfTI (.nii/.nii.gz), MetaImage (.mha/.mhd), a folder holding a DICOM series,
and 2D images (.png/.tif/.tiff/.jpg/.bmp). Volumes are 3D scalar or 3D RGB; images are 2D grey or RGB.
Inputs are checked for integrity first (input_integrity.py); writes are staged, verified and committed by
safe_write.py, so a failed or cancelled run never leaves a partial file nor loses a previous one.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import List, Optional

import numpy as np
import SimpleITK as sitk

from .errors import InputError, ResourceError
from .input_integrity import check_folder_entries, check_integrity, file_kind
from .output_plan import IMAGE_SUFFIXES, VOLUME_SUFFIXES, plan_output, suffix_of  # noqa: F401 (re-exported)
from .quiet import quiet_libraries

log = logging.getLogger(__name__)

FORMATS_HELP = "NRRD, NIfTI, MHA/MHD, a DICOM series folder, or a PNG/TIFF image"


def display_name(path) -> str:
    """A short name for messages and output nodes: the file name without its volume suffix."""
    p = Path(path)
    name = p.name
    suffix = suffix_of(p)
    return name[: -len(suffix)] if suffix and name.lower().endswith(suffix) else name


def read_volume(path, warnings: Optional[List[str]] = None) -> sitk.Image:
    """Read a 3D volume or 2D image; raises InputError with one sentence when it cannot.

    Before ITK sees it, the file is checked (input_integrity.py): a regular file (a FIFO or device would
    block), a complete compressed stream and as many data bytes as the header declares.
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise InputError(f"read_volume needs a file or folder path, not {path!r}.")
    p = Path(path)
    kind = file_kind(p)
    if kind == "missing":
        raise InputError(f"File '{path}' does not exist.")
    if kind == "folder":
        check_folder_entries(p)
        image = _read_dicom_series(p, warnings)
    else:
        check_integrity(p)
        try:
            with quiet_libraries():
                image = sitk.ReadImage(str(p))
        except RuntimeError as error:
            if "allocate" in str(error).lower() or "bad_alloc" in str(error):
                raise ResourceError(f"Not enough memory to read '{path}'; nothing was written.") from None
            if "determinant is 0" in str(error):
                raise InputError(f"Cannot read '{path}': its direction matrix is singular, so its geometry "
                                 f"cannot be trusted.") from None
            raise InputError(f"Cannot read '{path}': it is not a readable {FORMATS_HELP}.") from None
    check_image(image, display_name(p))
    return image


def _read_dicom_series(folder: Path, warnings: Optional[List[str]]) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    with quiet_libraries():
        series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InputError(f"Folder '{folder}' contains no DICOM series.")
    with quiet_libraries():
        files_by_series = {sid: reader.GetGDCMSeriesFileNames(str(folder), sid) for sid in series}
    chosen = max(series, key=lambda sid: len(files_by_series[sid]))
    if len(series) > 1:
        message = (f"Folder '{folder}' holds {len(series)} DICOM series; using the largest "
                   f"({len(files_by_series[chosen])} files, series {chosen}).")
        log.warning(message)
        if warnings is not None:
            warnings.append(message)
    _check_slice_spacing(folder, files_by_series[chosen])
    reader.SetFileNames(files_by_series[chosen])
    try:
        with quiet_libraries():
            return reader.Execute()
    except RuntimeError:
        raise InputError(f"Cannot read the DICOM series in '{folder}'.") from None


def _check_slice_spacing(folder: Path, files) -> None:
    """A series with missing or unevenly spaced slices cannot be one regular grid: refuse it in one sentence.

    ITK would stack the slices at one spacing, silently moving every slice after a gap.
    """
    if len(files) < 3:
        return
    reader = sitk.ImageFileReader()
    positions, normal = [], None
    with quiet_libraries():
        for name in files:
            reader.SetFileName(name)
            try:
                reader.ReadImageInformation()
                position = [float(v) for v in reader.GetMetaData("0020|0032").split("\\")]
                if normal is None:
                    cosines = [float(v) for v in reader.GetMetaData("0020|0037").split("\\")]
                    normal = np.cross(cosines[:3], cosines[3:6])
            except (RuntimeError, ValueError, IndexError):
                return  # no usable position tags: ITK's own spacing is all there is
            positions.append(float(np.dot(position, normal)))
    steps = np.diff(np.sort(positions))
    typical = float(np.median(steps))
    if typical <= 0 or not np.allclose(steps, typical, rtol=0.05, atol=1e-3):
        where = int(np.argmax(np.abs(steps - typical)))
        raise InputError(f"The DICOM series in '{folder}' has missing or unevenly spaced slices (a step of "
                         f"{steps[where]:.3g} mm after slice {where + 1}, where most are {typical:.3g} mm); "
                         f"it cannot be read as one regular volume.")


def check_geometry(image: sitk.Image, name: str) -> None:
    """Origin, spacing and direction must be finite, the spacing positive and the direction invertible."""
    dim = image.GetDimension()
    origin, spacing = np.asarray(image.GetOrigin()), np.asarray(image.GetSpacing())
    direction = np.asarray(image.GetDirection()).reshape(dim, dim)
    if not (np.all(np.isfinite(origin)) and np.all(np.isfinite(spacing)) and np.all(np.isfinite(direction))):
        raise InputError(f"Volume '{name}' has a non-finite origin, spacing or direction; its geometry cannot be "
                         f"trusted.")
    if np.any(spacing <= 0):
        raise InputError(f"Volume '{name}' has a spacing of {tuple(spacing)}; spacings must be positive.")
    if abs(np.linalg.det(direction)) < 1e-6:
        raise InputError(f"Volume '{name}' has a singular direction matrix; its geometry cannot be trusted.")


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
    check_geometry(image, name)


def check_output_path(path, dimension: int, role: str = "fused") -> Path:
    """Fail before any work if ``path`` cannot be written or has a suffix we cannot write for this data."""
    return plan_output(role, path, dimension).path


def write_volume(image: sitk.Image, path, compress: bool = True, role: str = "volume") -> Path:
    """Write one image safely (safe_write.py): staged beside the target, read back and verified, then renamed
    into place; a previous file at ``path`` survives any failure."""
    from .safe_write import write_all

    if not isinstance(image, sitk.Image):
        raise InputError(f"write_volume needs a SimpleITK image, not {type(image).__name__}.")
    planned = plan_output(role, path, image.GetDimension(), compress)
    for message in write_all([(image, planned)]):
        log.warning(message)
    return planned.path
