"""Methods grouped by the survey's families (registry.FAMILIES), for every listing that groups them:
``medfusion methods`` and the Slicer module's method combo box. Qt-free, so both use (and tests check) one order.
"""
from __future__ import annotations

from typing import List, NamedTuple, Optional, Tuple

from .registry import FAMILIES, MethodInfo, Registry


def grouped_by_family(registry: Registry) -> List[Tuple[str, List[MethodInfo]]]:
    """[(family title, [methods in registry order])] in FAMILIES order; families without a method are left out."""
    groups = [(title, [info for info in registry.infos() if info.family == key]) for key, title in FAMILIES.items()]
    return [(title, infos) for title, infos in groups if infos]


class ComboEntry(NamedTuple):
    """One row of a grouped combo box: a separator, a family title (not selectable) or a method."""

    kind: str  # "separator", "title" or "method"
    text: str = ""
    method: Optional[str] = None  # the registry name, for kind "method"


def combo_entries(registry: Registry) -> List[ComboEntry]:
    """The rows of a combo box listing the methods by family: before each family (a separator between families)
    its title, then its methods by title."""
    rows: List[ComboEntry] = []
    for title, infos in grouped_by_family(registry):
        if rows:
            rows.append(ComboEntry("separator"))
        rows.append(ComboEntry("title", title))
        rows.extend(ComboEntry("method", info.title, info.name) for info in infos)
    return rows
