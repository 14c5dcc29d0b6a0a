"""The one image-pair type: two co-registered slice images of one modality-pair folder sharing a file name.

Both the training split (:mod:`.data_split`) and the evaluation's pair finder (:mod:`.evaluation.pairs`) list
pairs of this type. File names start with the case (subject) id followed by a 3-digit slice index:
``28013.png`` is case 28, slice 13.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

SLICE_DIGITS = 3


def case_of(filename: str) -> Optional[str]:
    """The case id of a slice file name ('28013.png' -> '28'), or None when the name has no such form."""
    match = re.match(r"(\d+)", Path(filename).name)
    if not match or len(match.group(1)) <= SLICE_DIGITS:
        return None
    return str(int(match.group(1)[:-SLICE_DIGITS]))


def slice_of(filename: str) -> Optional[int]:
    """The slice index of a slice file name ('28013.png' -> 13), or None when the name has no such form."""
    match = re.match(r"(\d+)", Path(filename).name)
    if not match or len(match.group(1)) <= SLICE_DIGITS:
        return None
    return int(match.group(1)[-SLICE_DIGITS:])


@dataclass(frozen=True)
class Pair:
    folder: str  # modality-pair folder, e.g. "PET-MRI"
    name: str  # file name shared by both images, e.g. "25015.png"
    path_a: Path  # the engine's reference source (anatomical), FOLDER/<modality a>/NAME
    path_b: Path  # FOLDER/<modality b>/NAME

    @property
    def key(self) -> str:
        """'PET-MRI/25015.png': unique across folders (case ids and file names repeat between folders)."""
        return f"{self.folder}/{self.name}"

    @property
    def case(self) -> Optional[str]:
        return case_of(self.name)

    @property
    def slice(self) -> Optional[int]:
        return slice_of(self.name)

    @property
    def modality_a(self) -> str:
        return self.path_a.parent.name

    @property
    def modality_b(self) -> str:
        return self.path_b.parent.name
