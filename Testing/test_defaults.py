"""Defaults by measurement (issue 13, deliverable 5): one default, declared once, backed by the measured table.

reports/defaults/defaults.md (scripts/choose_defaults.py) ranks every variant over the 17 metrics on the
validation split and checks it looks clean; the registry's defaults must be its winners, and every front door
(CLI, demo, Slicer logic, the factories themselves) must use the registry's values.
"""
from __future__ import annotations

import inspect
import sys
from pathlib import Path

import SimpleITK as sitk

from MedFusionLib.cli import build_parser
from MedFusionLib.engine import fuse_volumes
from MedFusionLib.evaluation.ranking import rank_methods, read_rows, saturated_share
from MedFusionLib.logic import PARAMETERS, MedFusionLogic
from MedFusionLib.methods import DEFAULT_METHOD, REGISTRY

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import choose_defaults  # noqa: E402


def _label(method: str) -> str:
    """The method with its registry defaults spelled out, as the report labels it: mfenet[rule=max,edge_weight=0]."""
    options = REGISTRY.get(method).options
    if not options:
        return method
    values = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in ((k, o.default) for k, o in options.items())]
    return f"{method}[{','.join(values)}]"


def test_every_front_door_uses_the_registry_default_method():
    assert DEFAULT_METHOD in REGISTRY.names()
    parser = build_parser()
    fuse = parser.parse_args(["fuse", "a.nrrd", "b.nrrd", "-o", "out.nrrd"])
    demo = parser.parse_args(["demo"])
    assert fuse.method == demo.method == DEFAULT_METHOD
    assert {p.name: p.default for p in PARAMETERS}["method"] == DEFAULT_METHOD
    assert inspect.signature(MedFusionLogic.prepare).parameters["method"].default == DEFAULT_METHOD


def test_option_defaults_are_declared_once_and_match_the_factories():
    for info in REGISTRY.infos():
        module = __import__(f"MedFusionLib.methods.{info.module}", fromlist=[info.factory])
        signature = inspect.signature(getattr(module, info.factory)).parameters
        for option, declared in info.options.items():
            default, help_text = declared.default, declared.help
            assert signature[option].default == default, (info.name, option)
            if info.kind == "network":
                assert "paper" in help_text, (info.name, option)  # the paper's setting stays named
    parameters = {p.name: p.default for p in PARAMETERS}
    mfenet = REGISTRY.get("mfenet").options
    assert parameters["fusionRule"] == mfenet["rule"].default
    assert parameters["edgeStrength"] == mfenet["edge_weight"].default == 0.0


def test_the_defaults_are_the_winners_of_the_measured_table():
    rows = read_rows(list(choose_defaults.MEASURED), choose_defaults.LABELS_2026_11_21)
    ranks = rank_methods(rows)
    assert len(ranks) >= 16
    # The measured cleanliness and speed: of the variants ranked ahead of the default, none is clean and fast.
    report = (REPO / "reports" / "defaults" / "defaults.md").read_text()
    default = _label(DEFAULT_METHOD)
    assert f"Default method: `{default}`." in report
    seconds = choose_defaults.seconds_per_slice(rows)
    assert seconds[default] <= choose_defaults.FAST_SECONDS
    ahead = list(ranks)[: list(ranks).index(default)]
    for label in ahead:
        cells = report.split(f"| `{label}` |")[1].split("\n")[0].strip(" |").split(" | ")
        assert cells[-1] == "no" or seconds[label] > choose_defaults.FAST_SECONDS, (label, cells)
    # Each network's default options are its best-ranked clean variant.
    for network in ("mfenet", "edpsn"):
        variants = [label for label in ranks if label.split("[")[0] == network]
        clean = [v for v in variants if report.split(f"| `{v}` |")[1].split("\n")[0].endswith("| yes |")]
        assert clean[0] == _label(network), (network, clean)


def test_the_default_looks_clean_and_the_papers_mfenet_does_not(stroke_dir):
    t1 = sitk.ReadImage(str(stroke_dir / "T1.nii.gz"))
    middle = t1.GetSize()[2] // 2
    a, b = t1[:, :, middle - 2:middle + 2], sitk.ReadImage(str(stroke_dir / "T2.nii.gz"))

    def share(method, **options):
        result = fuse_volumes(a, b, method=method, method_options=options, preset_a="mr", preset_b="mr",
                              edges=False, return_sources=True, device="cpu")
        return saturated_share(*(sitk.GetArrayFromImage(x) for x in (*result.sources, result.fused)))

    assert share(DEFAULT_METHOD) <= choose_defaults.CLEAN_SHARE
    assert share("mfenet") <= choose_defaults.CLEAN_SHARE  # the new MFEnet default: no edge lines
    assert share("mfenet", edge_weight=1.0) > 0.05  # the paper's setting whitens the brain
