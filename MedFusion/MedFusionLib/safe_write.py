"""Write outputs so that nothing of the user's is lost and nothing corrupt is reported as written.

1. Stage: each output is written into a private folder beside its target (same file system, so the final
   rename is atomic), library messages kept off the terminal.
2. Verify: the staged file is read back and compared with what was meant to be written: size, components,
   voxels (exactly, except for lossy JPEG) and geometry (to the precision the format stores). ITK's NIfTI
   writer reports success on a full disk and leaves a short file: the read-back is what catches it.
3. Commit: only when every output is staged and verified, each file replaces its target; a previous file at a
   target is kept as a backup (a hard link) until every output is in place, and put back if anything fails.
   SIGINT/SIGTERM/SIGHUP are held during the commit (a few renames), so a signal never splits it.

A failure anywhere raises a MedFusionError and leaves the targets as they were, with no staging files behind.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from .errors import InputError, MedFusionError, WriteError
from .input_integrity import check_integrity
from .output_plan import IMAGE_SUFFIXES, LOSSY_SUFFIXES, PlannedOutput, suffix_of
from .held_signals import SignalHold
from .quiet import quiet_libraries

log = logging.getLogger(__name__)
_EXACT_GEOMETRY = (".nrrd", ".nhdr", ".mha", ".mhd")  # stored as decimal text or double: exact
_NIFTI = (".nii", ".nii.gz")  # stored as float32


@dataclass
class Staged:
    planned: PlannedOutput
    folder: Path
    moves: List[Tuple[Path, Path]] = field(default_factory=list)  # (staged file, target)
    warnings: List[str] = field(default_factory=list)


def _free_space_hint(folder: Path) -> str:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return ""
    return f" ({free / 2**20:.1f} MiB free there)" if free < 2**30 else ""


def _write_failed(planned: PlannedOutput, why: str) -> WriteError:
    return WriteError(f"Could not write the {planned.label}: {why}{_free_space_hint(planned.target.parent)}; "
                      f"nothing was changed.")


def as_8bit_image(image: sitk.Image) -> sitk.Image:
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


def _has_geometry(image: sitk.Image) -> bool:
    dim = image.GetDimension()
    return not (np.allclose(image.GetSpacing(), 1.0) and np.allclose(image.GetOrigin(), 0.0)
                and np.allclose(image.GetDirection(), np.eye(dim).ravel()))


def _verify(image: sitk.Image, staged: Path, planned: PlannedOutput) -> None:
    """Read the staged file back and compare it with ``image``; raise WriteError on any difference."""
    suffix = suffix_of(planned.path)
    try:
        check_integrity(staged)  # sizes and streams: a short file of zeros would read back "equal" to zeros
        with quiet_libraries():
            back = sitk.ReadImage(str(staged))
    except (RuntimeError, InputError):
        raise _write_failed(planned, "the written file is incomplete (is the disk full?)") from None
    if back.GetSize() != image.GetSize() or \
            back.GetNumberOfComponentsPerPixel() != image.GetNumberOfComponentsPerPixel():
        raise _write_failed(planned, "the written file does not hold the image's size")
    if suffix not in LOSSY_SUFFIXES:
        expected = sitk.GetArrayViewFromImage(image)
        actual = sitk.GetArrayViewFromImage(back)
        same = np.array_equal(actual, expected, equal_nan=np.issubdtype(expected.dtype, np.floating)) \
            if actual.dtype == expected.dtype else np.array_equal(actual.astype(np.float64),
                                                                  expected.astype(np.float64))
        if not same:
            raise _write_failed(planned, "the written voxels differ from the computed ones (is the disk full?)")
    if suffix in IMAGE_SUFFIXES:
        return  # no geometry stored: warned about before writing
    tolerance = 0.0 if suffix in _EXACT_GEOMETRY else 1e-4
    for name, mine, theirs in (("origin", image.GetOrigin(), back.GetOrigin()),
                               ("spacing", image.GetSpacing(), back.GetSpacing()),
                               ("direction", image.GetDirection(), back.GetDirection())):
        scale = max(1.0, float(np.max(np.abs(mine))))
        if not np.allclose(theirs, mine, rtol=0.0, atol=tolerance * scale + 1e-9 * scale):
            hint = "use .nrrd or .mha" if suffix not in _EXACT_GEOMETRY else "no file format stores it"
            raise InputError(f"The {planned.label} cannot hold this volume's {name} exactly (it would be stored "
                             f"as {tuple(round(v, 6) for v in theirs)}); {hint}.")


def _stage_folder(planned: PlannedOutput) -> Path:
    try:
        return Path(tempfile.mkdtemp(prefix=".medfusion-", dir=planned.target.parent))
    except OSError as error:
        raise _write_failed(planned, error.strerror or str(error)) from None


def _collect(staged: Staged) -> None:
    produced = {p.name: p for p in staged.folder.iterdir()}
    for target in staged.planned.files:
        if target.name not in produced:
            raise _write_failed(staged.planned, f"the writer did not produce '{target.name}'")
        staged.moves.append((produced[target.name], target))


@contextlib.contextmanager
def _staging(planned: PlannedOutput):
    """A staging folder removed on any failure. Signals are held from before the mkdir until the cleanup is
    armed, so that a Ctrl-C arriving just after the folder appears cannot leave it behind."""
    hold = SignalHold().start()
    try:
        folder = _stage_folder(planned)
    except BaseException:
        hold.release()
        raise
    staged = Staged(planned, folder)
    try:
        hold.release()  # a signal that arrived meanwhile is raised here, inside the cleanup
        yield staged
    except BaseException:
        discard([staged])
        raise


def stage_image(image: sitk.Image, planned: PlannedOutput) -> Staged:
    """Write ``image`` for ``planned`` into a staging folder and verify it; the caller commits or discards."""
    if not isinstance(image, sitk.Image):
        raise InputError(f"Only a SimpleITK image can be written to '{planned.path}', not {type(image).__name__}.")
    with _staging(planned) as staged:
        suffix = suffix_of(planned.path)
        if suffix in IMAGE_SUFFIXES:
            image = as_8bit_image(image)
            if _has_geometry(image):
                staged.warnings.append(f"'{planned.path}' is a plain image file: the origin, spacing and direction "
                                       f"are not stored (use .nrrd to keep them).")
        path = staged.folder / planned.target.name
        try:
            with quiet_libraries():
                sitk.WriteImage(image, str(path), useCompression=planned.compress and suffix != ".png")
        except RuntimeError:
            raise _write_failed(planned, "the writer failed (is the disk full, or the format unable to hold "
                                         "this image?)") from None
        _collect(staged)
        _verify(image, path, planned)
    return staged


def stage_with(write: Callable[[Path], object], planned: PlannedOutput) -> Staged:
    """Stage a file made by ``write(path)`` (e.g. a rendered PNG); verified to exist and decode."""
    with _staging(planned) as staged:
        path = staged.folder / planned.target.name
        try:
            with quiet_libraries():
                write(path)
        except MedFusionError:
            raise
        except Exception as error:  # noqa: BLE001 - whatever the renderer hit, the user gets one sentence
            log.debug("writing %s failed", planned.path, exc_info=True)
            raise _write_failed(planned, f"rendering failed ({type(error).__name__})") from None
        if not path.is_file() or path.stat().st_size == 0:
            raise _write_failed(planned, "nothing was written")
        try:
            with quiet_libraries():
                sitk.ReadImage(str(path))
        except RuntimeError:
            raise _write_failed(planned, "the written file cannot be read back (is the disk full?)") from None
        _collect(staged)
    return staged


def discard(staged: Sequence[Staged]) -> None:
    for item in staged:
        shutil.rmtree(item.folder, ignore_errors=True)


class _HeldSignals(SignalHold):
    """Hold SIGINT/SIGTERM/SIGHUP for a few renames; one that arrived meanwhile is noted, not lost silently."""

    def __init__(self):
        super().__init__(deliver=False)  # the outputs are committed: finishing is what the user's files need now

    def __exit__(self, *exc):
        super().__exit__(*exc)
        for number in dict.fromkeys(self.arrived):
            log.warning("Signal %s arrived while the outputs were being put in place; they are complete.", number)
        return False


def commit(staged: Sequence[Staged]) -> None:
    """Move every staged file onto its target; on any failure put every previous file back."""
    done: List[list] = []  # [target, backup of the previous file or None, whether our file is in place]
    with _HeldSignals():  # the renames, a rollback and removing the backups all finish once begun
        try:
            try:
                for item in staged:
                    for source, target in item.moves:
                        backup = None
                        if os.path.lexists(target):
                            if os.path.islink(target) or not os.path.isfile(target):
                                raise WriteError(f"'{target}' stopped being a regular file while MedFusion was "
                                                 f"writing; every previous file was restored.")
                            backup = item.folder / f".previous-{target.name}"
                            try:
                                os.link(target, backup)  # the previous file stays in place until replaced
                            except OSError:
                                os.replace(target, backup)
                        done.append([target, backup, False])
                        os.replace(source, target)
                        done[-1][2] = True
            except BaseException as error:
                for target, backup, placed in reversed(done):
                    if backup is not None and (placed or not os.path.lexists(target)):
                        os.replace(backup, target)
                    elif backup is None and placed:
                        Path(target).unlink(missing_ok=True)
                if isinstance(error, OSError) and not isinstance(error, MedFusionError):
                    raise WriteError(f"Could not put the outputs in place ({error.strerror or error}); every "
                                     f"previous file was restored.") from None
                raise
        finally:
            discard(staged)


def write_all(items: Sequence[Tuple[object, PlannedOutput]]) -> List[str]:
    """Stage, verify and commit ``(image or writer function, planned output)`` pairs; returns warnings."""
    staged: List[Staged] = []
    try:
        for what, planned in items:
            staged.append(stage_with(what, planned) if callable(what) and not isinstance(what, sitk.Image)
                          else stage_image(what, planned))
    except BaseException:
        discard(staged)
        raise
    commit(staged)
    return [message for item in staged for message in item.warnings]
