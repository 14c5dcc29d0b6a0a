"""Methods grouped by family (methods/families.py): the order `medfusion methods` and the Slicer combo box share."""
from __future__ import annotations

import pytest

from MedFusionLib.methods import FAMILIES, REGISTRY
from MedFusionLib.methods.families import combo_entries, grouped_by_family
from MedFusionLib.methods.registry import MethodInfo, Registry


def test_groups_follow_the_families_order_and_hold_every_method_once():
    groups = grouped_by_family(REGISTRY)
    titles = [title for title, _ in groups]
    assert titles == [t for t in FAMILIES.values() if t in titles]  # FAMILIES order
    assert {"Classic rules", "CNN", "GAN", "U-Net"} <= set(titles)
    names = [info.name for _, infos in groups for info in infos]
    assert sorted(names) == sorted(REGISTRY.names()) and len(names) == len(set(names))
    key_of = {title: key for key, title in FAMILIES.items()}
    for title, infos in groups:
        assert infos and all(info.family == key_of[title] for info in infos)
        order = [n for n in REGISTRY.names() if n in {i.name for i in infos}]
        assert [info.name for info in infos] == order  # registry order within a family


def test_empty_families_are_left_out():
    registry = Registry([MethodInfo(name="x", title="X", kind="network", summary="", reference="", module="m",
                                    family="gan"),
                         MethodInfo(name="y", title="Y", kind="classic", summary="", reference="", module="m")])
    assert [(t, [i.name for i in infos]) for t, infos in grouped_by_family(registry)] == \
        [("Classic rules", ["y"]), ("GAN", ["x"])]


def test_combo_rows_title_each_family_and_separate_them():
    rows = combo_entries(REGISTRY)
    groups = grouped_by_family(REGISTRY)
    assert rows[0] == ("title", groups[0][0], None)
    assert [r.text for r in rows if r.kind == "title"] == [title for title, _ in groups]
    assert sum(r.kind == "separator" for r in rows) == len(groups) - 1
    assert [r.method for r in rows if r.kind == "method"] == [i.name for _, infos in groups for i in infos]
    for before, row in zip(rows, rows[1:]):  # a separator is always followed by a family title
        if before.kind == "separator":
            assert row.kind == "title"
    assert all(r.text == REGISTRY.get(r.method).title for r in rows if r.kind == "method")


def test_an_unknown_family_is_refused():
    with pytest.raises(ValueError, match="family 'rnn' is not one of"):
        MethodInfo(name="z", title="Z", kind="network", summary="", reference="", module="m", family="rnn")


def test_the_slicer_method_box_is_filled_from_the_grouping_not_bound_by_row():
    """Static (no Qt here): the widget fills its method combo box from combo_entries, with separators and disabled
    title rows, and keeps it out of the parameter-node binding, whose enum connector maps row i to the i-th method
    and would undo the grouping."""
    import ast
    from pathlib import Path

    source = (Path(__file__).resolve().parents[1] / "MedFusion" / "MedFusion.py").read_text(encoding="utf-8")
    functions = {node.name: ast.unparse(node) for node in ast.walk(ast.parse(source))
                 if isinstance(node, ast.FunctionDef)}
    fill = functions["_fillMethodComboBox"]
    assert "combo_entries(REGISTRY)" in fill and "insertSeparator" in fill and "setEnabled(False)" in fill
    assert "widgets.pop('method'" in functions["_boundWidgets"]
    assert "self._fillMethodComboBox()" in functions["setup"]
    assert "findData(name)" in functions["_showMethod"] and "self._showMethod(method)" in functions["_updateGUI"]
