"""MedFusionLib: fuse two co-registered medical volumes (CT, MR, PET, SPECT) slice by slice.

Public API (imported lazily, so ``import MedFusionLib`` stays cheap and torch loads only when needed):

    from MedFusionLib import fuse_volumes, read_volume, write_volume, REGISTRY
    result = fuse_volumes(read_volume("ct.nii.gz"), read_volume("mr.nii.gz"), method="laplacian")
    write_volume(result.fused, "fused.nrrd")
"""
import logging

from .errors import (Cancelled, InputError, MedFusionError, MethodOutputError, ResourceError, WeightsError,
                     WriteError)

# A library leaves log output to the application (CLI, Slicer); see logging HOWTO "Configuring logging for a library".
logging.getLogger(__name__).addHandler(logging.NullHandler())

__version__ = "0.1.0"

_LAZY = {
    "fuse_volumes": "engine",
    "FusionResult": "engine",
    "read_volume": "volume_io",
    "write_volume": "volume_io",
    "REGISTRY": "methods",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'MedFusionLib' has no attribute {name!r}")


__all__ = ["Cancelled", "InputError", "MedFusionError", "MethodOutputError", "ResourceError", "WeightsError",
           "WriteError", *_LAZY]
