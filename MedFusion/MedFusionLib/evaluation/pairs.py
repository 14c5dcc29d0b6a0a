"""Finding the image pairs of an evaluation set, and choosing a subset of them.

Layout (the shared Harvard data's): ``ROOT/<X>-<Y>/<X>/name.png`` and ``ROOT/<X>-<Y>/<Y>/name.png``, one
folder per modality pair, the two images of a pair sharing a file name. ROOT may also be one such folder.
File names start with the case (subject) id followed by a 3-digit slice index: ``28013.png`` is case 28,
slice 13. Images are listed in natural order (by case, then slice).

Which image is the engine's reference ``a``: the method contract says ``a`` is the anatomical source, so in a
folder pairing a functional modality (PET, SPECT) with an anatomical one, the anatomical one is ``a`` whatever
the folder's name order (PET-MRI -> a = MRI, b = PET). Otherwise ``a`` is the first name (CT-MRI -> a = CT).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, Union

from ..errors import InputError
from ..pairs import Pair, case_of  # noqa: F401  (case_of: part of this module's interface)
from ..volume_io import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

FUNCTIONAL_MODALITIES = ("PET", "SPECT")  # pseudo-colour functional images: never the reference

CaseFilter = Union[None, Set[str], Mapping[str, Set[str]]]  # all folders, or folder -> case ids


@dataclass(frozen=True)
class PairFolder:
    name: str  # "PET-MRI"
    modality_a: str  # the reference source's sub-folder, e.g. "MRI"
    modality_b: str  # e.g. "PET"
    pairs: Tuple[Pair, ...]


def natural_key(name: str):
    """Sort key: runs of digits compare as numbers ('2004.png' < '28013.png' < '33005.png')."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in re.split(r"(\d+)", name)
            if part]


def parse_list(text: Optional[str], what: str) -> Optional[List[str]]:
    """'a,b , c' -> ['a', 'b', 'c']; None or '' -> None. Commas inside [...] do not split, so method
    variants such as 'mfenet[rule=add,edge_weight=0]' stay whole."""
    if text is None:
        return None
    items = [item.strip() for item in re.split(r",(?![^\[]*\])", str(text)) if item.strip()]
    if not items:
        raise InputError(f"The list of {what} is empty.")
    return items


def parse_cases(text: Optional[str]) -> Optional[Set[str]]:
    """'28,41' -> {'28', '41'} (leading zeros dropped, so '028' is case 28)."""
    items = parse_list(text, "cases")
    if items is None:
        return None
    bad = [item for item in items if not item.isdigit()]
    if bad:
        raise InputError(f"Case ids are numbers (the leading digits of a file name before its 3-digit slice "
                         f"index); got {', '.join(map(repr, bad))}.")
    return {str(int(item)) for item in items}


def _images_in(folder: Path) -> Dict[str, Path]:
    return {p.name: p for p in folder.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES}


def _pair_folder(folder: Path, warnings: List[str]) -> Optional[PairFolder]:
    """The pairs of one ``X-Y`` folder, or None when it is not laid out as one."""
    names = folder.name.split("-")
    if len(names) != 2 or not all(names) or not all((folder / n).is_dir() for n in names):
        return None
    first, second = names
    if first.upper() in FUNCTIONAL_MODALITIES and second.upper() not in FUNCTIONAL_MODALITIES:
        first, second = second, first
    images_a, images_b = _images_in(folder / first), _images_in(folder / second)
    unpaired = sorted(set(images_a) ^ set(images_b), key=natural_key)
    if unpaired:
        shown = ", ".join(f"{first if n in images_a else second}/{n}" for n in unpaired[:5])
        more = f" and {len(unpaired) - 5} more" if len(unpaired) > 5 else ""
        message = (f"{folder.name}: {len(unpaired)} image(s) without a partner of the same name are skipped "
                   f"({shown}{more}).")
        log.warning(message)
        warnings.append(message)
    common = sorted(set(images_a) & set(images_b), key=natural_key)
    pairs = tuple(Pair(folder.name, n, images_a[n], images_b[n]) for n in common)
    return PairFolder(folder.name, first, second, pairs)


def discover(root, warnings: Optional[List[str]] = None) -> List[PairFolder]:
    """Every modality-pair folder under ``root`` (or ``root`` itself when it is one), sorted by name."""
    warnings = [] if warnings is None else warnings
    root = Path(root)
    if not root.exists():
        raise InputError(f"Folder '{root}' does not exist.")
    if not root.is_dir():
        raise InputError(f"'{root}' is not a folder; give a folder of modality-pair folders such as CT-MRI/.")
    single = _pair_folder(root, warnings)
    if single is not None:
        return [single]
    folders = [f for f in (_pair_folder(d, warnings) for d in sorted(root.iterdir(), key=lambda p: p.name)
                           if d.is_dir()) if f is not None]
    if not folders:
        raise InputError(f"No modality-pair folders found in '{root}'; expected sub-folders named like "
                         f"CT-MRI holding CT/ and MRI/ with same-named images.")
    return folders


def select(folders: Sequence[PairFolder], names: Optional[Iterable[str]] = None, cases: CaseFilter = None,
           every: int = 1, limit: Optional[int] = None) -> List[PairFolder]:
    """Restrict to the named folders, then to the case ids, then every ``every``-th image, then the first
    ``limit`` images of each folder (in natural order). Raises when nothing is left.

    ``cases`` is one set of case ids for every folder, or a mapping folder -> case ids (a folder missing
    from the mapping keeps no image), e.g. the validation cases of a data split.
    """
    if every < 1:
        raise InputError(f"--every must be at least 1, not {every}.")
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1, not {limit}.")
    chosen = list(folders)
    if names is not None:
        available = {f.name: f for f in folders}
        unknown = [n for n in names if n not in available]
        if unknown:
            raise InputError(f"No modality-pair folder named {', '.join(map(repr, unknown))}; found: "
                             f"{', '.join(available)}.")
        chosen = [available[n] for n in dict.fromkeys(names)]
    out = []
    for folder in chosen:
        pairs = list(folder.pairs)
        if cases is not None:
            wanted = cases.get(folder.name, set()) if isinstance(cases, Mapping) else cases
            pairs = [p for p in pairs if p.case in wanted]
        pairs = pairs[::every]
        if limit is not None:
            pairs = pairs[:limit]
        if pairs:
            out.append(PairFolder(folder.name, folder.modality_a, folder.modality_b, tuple(pairs)))
    if not out:
        what = "" if cases is None else f" of case(s) {', '.join(sorted(_all_cases(cases), key=int))}"
        raise InputError(f"No image pairs{what} found in {', '.join(f.name for f in chosen) or 'the folder'}.")
    return out


def _all_cases(cases) -> Set[str]:
    if isinstance(cases, Mapping):
        return set().union(*cases.values()) if cases else set()
    return set(cases)
