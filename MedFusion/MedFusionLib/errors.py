"""Errors MedFusion raises on purpose. Each carries one sentence a clinician can act on."""


class MedFusionError(Exception):
    """Base class: the message is a complete, user-facing sentence (the CLI prints it without a traceback)."""


class InputError(MedFusionError, ValueError):
    """An input (file, volume, method, preset, option or output path) cannot be used as given."""


class WeightsError(MedFusionError, RuntimeError):
    """Shipped network weights are missing, corrupted or do not match the manifest."""


class Cancelled(MedFusionError):
    """The user cancelled a running fusion; nothing was written."""


class WorkerError(MedFusionError, RuntimeError):
    """The separate fusion process crashed, was killed (e.g. out of memory) or stopped responding."""


class WriteError(MedFusionError, OSError):
    """An output could not be written completely (disk full, writer failure); no user file was changed."""


class ResourceError(MedFusionError, MemoryError):
    """The machine ran out of memory even at the smallest batch; nothing was written."""


class MethodOutputError(MedFusionError, ArithmeticError):
    """A method produced values that are not finite (NaN or infinity); the result is refused."""
