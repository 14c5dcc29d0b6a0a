"""What MedFusion needs from the Slicer it runs in (MedFusionLib.slicer_setup), tested without Slicer: the
version decision table and where it is stated, the dependency checks by import and minimum version, the pip
arguments that keep Slicer's numpy, and the self-test's skip message.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from MedFusionLib import slicer_setup
from MedFusionLib.slicer_setup import (Requirement, check, load_requirements, minimum_slicer, numpy_constraint,
                                       parse_version, pip_arguments, self_test_missing, unsupported_slicer_message)

ROOT = Path(__file__).resolve().parents[1]


def test_the_minimum_slicer_is_the_first_release_with_everything_the_module_imports():
    assert minimum_slicer() == (5, 4)
    for release in slicer_setup.SLICER_RELEASES:
        assert slicer_setup.supports(release) == (release.version >= (5, 4)), release
    assert unsupported_slicer_message((5, 2, 2)) == "MedFusion needs 3D Slicer 5.4 or later; this is Slicer 5.2.2."
    assert unsupported_slicer_message((5, 4, 0)) is None and unsupported_slicer_message((5, 13)) is None
    # connectGui gives no tag before 5.10 on supported releases: the reason the widget uses connectParametersToGui.
    assert {r.version for r in slicer_setup.SLICER_RELEASES if slicer_setup.supports(r)
            and not r.connect_gui_returns_tag} == {(5, 4), (5, 6), (5, 8)}


def test_the_minimum_is_stated_where_users_and_the_catalog_read_it():
    minimum = slicer_setup.version_text(minimum_slicer())
    description = re.search(r'set\(EXTENSION_DESCRIPTION "([^"]*)"\)', (ROOT / "CMakeLists.txt").read_text()).group(1)
    assert f"Slicer {minimum} or later" in description
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    slicer_section = readme[readme.index("## 3D Slicer"):]
    slicer_section = slicer_section[:slicer_section.index("\n## ", 4)]
    assert f"Slicer {minimum} or later" in slicer_section
    for release in slicer_setup.SLICER_RELEASES:  # the supported-versions table has a row per release line
        assert f"| {slicer_setup.version_text(release.version)}" in slicer_section, release.version
    assert "Slicer 5.x" not in readme and "5.11" not in slicer_section


@pytest.mark.parametrize("text, expected", [("4.11.0.86", (4, 11, 0, 86)), ("2.13.0+cpu", (2, 13, 0)),
                                            ("2.0.0rc1", (2, 0, 0)), ("1.26", (1, 26)), ("dev", ())])
def test_parse_version(text, expected):
    assert parse_version(text) == expected


def test_requirements_file_lines_name_their_import_and_a_minimum():
    requirements = load_requirements()
    assert {(r.pip_name, r.import_name) for r in requirements} == {("opencv-python-headless", "cv2"),
                                                                    ("PyWavelets", "pywt")}
    assert all(parse_version(r.minimum) for r in requirements)


def test_a_malformed_requirement_line_is_refused_with_its_place(tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_text("opencv-python-headless\n")
    with pytest.raises(ValueError, match=r"requirements.txt:1: write requirements as"):
        load_requirements(path)


def test_opencv_is_capped_below_4_12_only_while_numpy_is_1x():
    opencv = Requirement("opencv-python-headless", "cv2", "4.5")
    assert opencv.pip_spec("1.26.4") == "opencv-python-headless>=4.5,<4.12"  # Slicer 5.4-5.8
    assert opencv.pip_spec("2.4.1") == "opencv-python-headless>=4.5"  # Slicer 5.10+
    assert Requirement("PyWavelets", "pywt", "1.1").pip_spec("1.26.4") == "PyWavelets>=1.1"


def test_pip_gets_the_installed_numpy_as_a_constraint(tmp_path):
    problems = check([Requirement("opencv-python-headless", "cv2", "4.5")], version_of=lambda name: None)
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(numpy_constraint("1.26.4"))
    args = pip_arguments(problems, "1.26.4", str(constraints))
    assert args == ["-c", str(constraints), "opencv-python-headless>=4.5,<4.12"]
    assert constraints.read_text() == "numpy==1.26.4\n"


def test_checks_go_by_import_and_minimum_version():
    opencv = Requirement("opencv-python-headless", "cv2", "4.5")
    # Any OpenCV that imports counts (opencv-python, contrib): no second, clashing OpenCV gets installed.
    assert check([opencv], version_of=lambda name: "4.8.0") == []
    old = check([opencv], version_of=lambda name: "3.4.2")
    assert old and old[0].describe() == "opencv-python-headless 4.5 or later (found 3.4.2)"
    missing = check([opencv], version_of=lambda name: None)
    assert missing[0].describe() == "opencv-python-headless 4.5 or later (not installed)"
    assert check([opencv], version_of=lambda name: "") == []  # imports but reports no version: accepted


def test_installed_versions_are_read_from_the_real_modules():
    import cv2
    import pywt

    assert slicer_setup.installed_version("cv2") == cv2.__version__
    assert slicer_setup.installed_version("pywt") == pywt.__version__
    assert slicer_setup.installed_version("no_such_module_medfusion") is None
    # torch is found without being imported (it must not load into Slicer's own process).
    code = ("import sys; from MedFusionLib.slicer_setup import installed_version; v = installed_version('torch'); "
            "print(v, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout.split()
    assert parse_version(out[0]) >= parse_version(slicer_setup.TORCH_MINIMUM) and out[1] == "False"


def test_self_test_skip_message_names_what_is_missing():
    assert self_test_missing() is None  # this environment has everything
    message = self_test_missing(version_of=lambda name: None if name in ("torch", "pywt") else "9.9")
    assert message == ("MedFusionTest skipped: it needs torch 2.0 or later (not installed), PyWavelets 1.1 or later "
                       "(not installed); click Apply in the MedFusion module once to install them.")
