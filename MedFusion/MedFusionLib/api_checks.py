"""Argument types of the Python API, checked before any work: a wrong type is one sentence, not a traceback
from deep inside numpy or torch."""
from __future__ import annotations

from typing import Any

import numpy as np
import SimpleITK as sitk

from .errors import InputError


def _fail(name: str, wanted: str, value: Any) -> InputError:
    return InputError(f"fuse_volumes: '{name}' must be {wanted}, not {type(value).__name__} {value!r:.60}.")


def _has_file_geometry(image: sitk.Image) -> bool:
    """False for a grid with the defaults a plain image file (PNG, TIFF) reads with: origin 0, spacing 1."""
    dim = image.GetDimension()
    return not (np.allclose(image.GetOrigin(), 0.0) and np.allclose(image.GetSpacing(), 1.0)
                and np.allclose(image.GetDirection(), np.eye(dim).ravel()))


def check_images_and_callbacks(a, b, progress, cancel) -> None:
    for image, name in ((a, "a"), (b, "b")):
        if image is not None and not isinstance(image, sitk.Image):
            raise _fail(name, "a SimpleITK image (read files with read_volume)", image)
    for value, name in ((progress, "progress"), (cancel, "cancel")):
        if value is not None and not callable(value):
            raise _fail(name, "a function", value)


def check_settings_types(settings) -> None:
    """The types of a FusionSettings' fields (settings.py checks their values)."""
    for name in ("method", "axis", "name_a", "name_b", "precision"):
        value = getattr(settings, name)
        if not isinstance(value, str):
            raise _fail(name, "a string", value)
    if settings.device is not None and not isinstance(settings.device, str):
        raise _fail("device", "a string such as 'cpu' or 'cuda:0'", settings.device)
    batch_size = settings.batch_size
    if batch_size is not None and (isinstance(batch_size, (bool, np.bool_))
                                   or not isinstance(batch_size, (int, np.integer))):
        raise _fail("batch_size", "a whole number", batch_size)
    for name in ("edges", "return_sources", "compile", "check_registration", "crop_to_anatomy"):
        if not isinstance(getattr(settings, name), (bool, np.bool_)):
            raise _fail(name, "True or False", getattr(settings, name))
    options = settings.method_options
    if options is not None and (not isinstance(options, dict) or not all(isinstance(k, str) for k in options)):
        raise _fail("method_options", "a dict of option names to values", options)


def check_2d_pair(a: sitk.Image, b: sitk.Image, name_a: str, name_b: str) -> None:
    """Two plain 2D images of different sizes have no common frame: fusing them would align their top-left
    corners, which is no registration at all."""
    if a.GetDimension() != 2 or b.GetDimension() != 2 or a.GetSize() == b.GetSize():
        return
    if _has_file_geometry(a) or _has_file_geometry(b):
        return  # real physical geometry: resampling in physical space is meaningful
    size_a, size_b = ("x".join(map(str, image.GetSize())) for image in (a, b))
    raise InputError(f"'{name_a}' ({size_a}) and '{name_b}' ({size_b}) are 2D images of different sizes without "
                     f"a position in space; register them to one size first.")
