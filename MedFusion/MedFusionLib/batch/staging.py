"""A case's outputs written into a hidden staging folder, read back and checked, then renamed into place.

Nothing a reader can mistake for a result appears before every output of the case is complete: a crash, an
error or a killed worker leaves only the ``.staging-*`` folder (removed on the next run of that case) and the
previous outputs with their manifest untouched. The commit replaces the old manifest last.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict

import numpy as np
import SimpleITK as sitk

from ..errors import MedFusionError
from .manifest import MANIFEST, file_sha256, read_manifest, write_manifest

STAGING_PREFIX = ".staging-"


class OutputError(MedFusionError, OSError):
    """An output did not read back as written (disk full, network file system trouble)."""


def _same_geometry(a: sitk.Image, b: sitk.Image) -> bool:
    return (a.GetSize() == b.GetSize() and a.GetNumberOfComponentsPerPixel() == b.GetNumberOfComponentsPerPixel()
            and np.allclose(a.GetOrigin(), b.GetOrigin(), rtol=0, atol=1e-5)
            and np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=1e-6, atol=0)
            and np.allclose(a.GetDirection(), b.GetDirection(), rtol=0, atol=1e-6))


class StagedOutputs:
    def __init__(self, case_dir: Path):
        self.case_dir = case_dir
        for stale in case_dir.glob(STAGING_PREFIX + "*"):  # left by a run that was killed
            shutil.rmtree(stale, ignore_errors=True)
        self.dir = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=case_dir))
        self.files: Dict[str, str] = {}  # output key -> file name

    def add_volume(self, key: str, image: sitk.Image, name: str) -> None:
        from ..volume_io import write_volume

        staged = write_volume(image, self.dir / name)
        try:
            back = sitk.ReadImage(str(staged))
        except RuntimeError:
            raise OutputError(f"The {key} output '{name}' could not be read back after writing.") from None
        if not (_same_geometry(image, back)
                and np.array_equal(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(back))):
            raise OutputError(f"The {key} output '{name}' did not read back as written; check the output disk.")
        self.files[key] = name

    def add_png(self, key: str, name: str, render) -> None:
        """``render(path)`` writes a PNG; it is checked to decode."""
        import cv2

        staged = self.dir / name
        render(staged)
        image = cv2.imread(str(staged), cv2.IMREAD_UNCHANGED)
        if image is None or image.size == 0:
            raise OutputError(f"The {key} output '{name}' is not a readable PNG after writing.")
        self.files[key] = name

    def commit(self, manifest: Dict[str, Any]) -> Dict[str, Path]:
        """Rename every staged file into the case folder, drop outputs the new settings no longer make, and
        write the manifest (with each output's size and sha256) last. Returns output key -> final path."""
        old = read_manifest(self.case_dir) or {}
        outputs = {}
        for key, name in self.files.items():
            staged = self.dir / name
            outputs[key] = {"file": name, "size": staged.stat().st_size, "sha256": file_sha256(staged)}
        (self.case_dir / MANIFEST).unlink(missing_ok=True)  # from here on the old outputs are no longer vouched for
        for name in self.files.values():
            os.replace(self.dir / name, self.case_dir / name)
        for key, entry in old.get("outputs", {}).items():
            name = str(entry.get("file", ""))
            if name and name == Path(name).name and name not in self.files.values():
                (self.case_dir / name).unlink(missing_ok=True)
        write_manifest(self.case_dir, {**manifest, "outputs": outputs})
        self.discard()
        return {key: self.case_dir / name for key, name in self.files.items()}

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
