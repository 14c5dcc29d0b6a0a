"""Static checks of the Slicer side that cannot be imported here (no Qt, no Slicer application):

MedFusion.py compiles; every ``self.ui.<name>`` it uses exists in the .ui; every widget bound with the dynamic
property SlicerParameterName names a parameter of the parameterNodeWrapper class, whose fields are exactly the
logic's PARAMETER_NAMES; the CMake files list files that exist and cover every .py of MedFusionLib; the
requirements cover what the fusion path imports; the icons are what Slicer expects.
"""
from __future__ import annotations

import ast
import fnmatch
import py_compile
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from MedFusionLib.logic import EDGE_DETAIL_RANGE, EDGE_STRENGTH_RANGE, PARAMETER_NAMES, PARAMETERS
from MedFusionLib.methods import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "MedFusion"
MODULE_PY = MODULE_DIR / "MedFusion.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "MedFusion.ui"
REQUIREMENTS = MODULE_DIR / "Resources" / "requirements.txt"
LIB = MODULE_DIR / "MedFusionLib"


@pytest.fixture(scope="module")
def module_ast():
    return ast.parse(MODULE_PY.read_text(encoding="utf-8"), filename=str(MODULE_PY))


@pytest.fixture(scope="module")
def ui_widgets():
    """name -> (class, {property name: value}) for every widget of the .ui."""
    root = ET.parse(UI_FILE).getroot()
    widgets = {}
    for widget in root.iter("widget"):
        properties = {}
        for prop in widget.findall("property"):
            value = prop[0]
            if value.tag == "stringlist":
                properties[prop.get("name")] = [s.text for s in value.findall("string")]
            else:
                properties[prop.get("name")] = value.text
        widgets[widget.get("name")] = (widget.get("class"), properties)
    return widgets


def test_module_file_compiles(tmp_path):
    py_compile.compile(str(MODULE_PY), cfile=str(tmp_path / "MedFusion.pyc"), doraise=True)


def test_every_ui_attribute_used_exists_in_the_ui(module_ast, ui_widgets):
    used = {node.attr for node in ast.walk(module_ast)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
            and node.value.attr == "ui" and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"}
    assert used, "MedFusion.py uses no self.ui.<widget>?"
    missing = sorted(used - set(ui_widgets))
    assert not missing, f"MedFusion.py uses widgets that the .ui does not define: {missing}"


def _parameter_node_class(module_ast):
    for node in module_ast.body:
        if isinstance(node, ast.ClassDef) and any(
                (isinstance(d, ast.Name) and d.id == "parameterNodeWrapper")
                or (isinstance(d, ast.Call) and getattr(d.func, "id", None) == "parameterNodeWrapper")
                for d in node.decorator_list):
            return node
    raise AssertionError("no @parameterNodeWrapper class in MedFusion.py")


def test_parameter_node_wrapper_declares_exactly_the_logic_parameters(module_ast):
    cls = _parameter_node_class(module_ast)
    fields = [stmt.target.id for stmt in cls.body if isinstance(stmt, ast.AnnAssign)]
    assert fields == list(PARAMETER_NAMES)


def test_bound_widgets_name_parameters_and_suit_their_type(ui_widgets):
    expected_class = {"node": {"qMRMLNodeComboBox"}, "enum": {"QComboBox"}, "str": {"QLineEdit"},
                      "bool": {"QCheckBox"}, "float": {"ctkSliderWidget", "QDoubleSpinBox"}}
    kinds = {p.name: p.kind for p in PARAMETERS}
    bound = {}
    for name, (cls, props) in ui_widgets.items():
        parameter = props.get("SlicerParameterName")
        if parameter is None:
            continue
        assert parameter in kinds, f"widget {name} is bound to unknown parameter '{parameter}'"
        assert cls in expected_class[kinds[parameter]], f"{name} ({cls}) cannot show a {kinds[parameter]}"
        assert parameter not in bound, f"parameter {parameter} is bound twice"
        bound[parameter] = name
    assert set(bound) == set(PARAMETER_NAMES), f"parameters without a widget: {set(PARAMETER_NAMES) - set(bound)}"
    # A wrong property name (the template's slip) would silently leave a widget unbound.
    assert not any("SlicerParameter" in p and p != "SlicerParameterName"
                   for _, props in ui_widgets.values() for p in props)


def test_ui_sections_and_selectors(ui_widgets):
    sections = {props.get("text") for cls, props in ui_widgets.values() if cls == "ctkCollapsibleButton"}
    assert sections == {"Inputs", "Method", "Outputs", "Advanced"}
    for name in ("inputVolumeASelector", "inputVolumeBSelector", "outputVolumeSelector"):
        cls, props = ui_widgets[name]
        assert cls == "qMRMLNodeComboBox"
        assert {"vtkMRMLScalarVolumeNode", "vtkMRMLVectorVolumeNode"} <= set(props["nodeTypes"])
        # The parameter node wrapper sets nodeTypes to vtkMRMLScalarVolumeNode (the parent class of vector
        # volumes), so labelmaps and diffusion volumes are hidden by hideChildNodeTypes, which it leaves alone.
        assert props.get("showChildNodeTypes") == "true"
        assert {"vtkMRMLLabelMapVolumeNode", "vtkMRMLDiffusionImageVolumeNode"} <= set(props["hideChildNodeTypes"])
        assert "vtkMRMLTensorVolumeNode" not in props["hideChildNodeTypes"]  # vector volumes derive from it
    _, slider = ui_widgets["edgeStrengthSliderWidget"]
    assert (float(slider["minimum"]), float(slider["maximum"])) == EDGE_STRENGTH_RANGE
    _, detail = ui_widgets["edgeDetailSliderWidget"]
    assert (float(detail["minimum"]), float(detail["maximum"])) == EDGE_DETAIL_RANGE


def test_every_node_selector_gets_the_scene():
    root = ET.parse(UI_FILE).getroot()
    selectors = {w.get("name") for w in root.iter("widget") if w.get("class") == "qMRMLNodeComboBox"}
    connected = {c.findtext("receiver") for c in root.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
                 and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    assert selectors and selectors <= connected


def test_module_follows_the_scripted_module_template(module_ast):
    classes = {node.name: node for node in module_ast.body if isinstance(node, ast.ClassDef)}
    bases = {name: [ast.unparse(b) for b in node.bases] for name, node in classes.items()}
    assert "ScriptedLoadableModule" in bases["MedFusion"]
    assert bases["MedFusionWidget"] == ["ScriptedLoadableModuleWidget", "VTKObservationMixin"]
    assert "ScriptedLoadableModuleTest" in bases["MedFusionTest"]
    assert "MedFusionLogic" in classes
    source = MODULE_PY.read_text(encoding="utf-8")
    for needle in ("slicer.i18n import tr as _", "resourcePath(\"UI/MedFusion.ui\")", "connectParametersToGui(",
                   "disconnectGui(", "PyTorchUtils", "installTorch(", "torchVersionRequirement", "pip_ensure",
                   "pip_install", "numpy_constraint", "errorDisplay", "qt.QTimer()", "startParameterNode",
                   "job.poll()", "job.cancel()", "setSliceViewerLayers", "self_test_missing", "skipTest"):
        assert needle in source, needle
    # Bindings go through connectParametersToGui, whose tag can be disconnected on every supported Slicer
    # (connectGui returns none before 5.10); the fusion never runs on the GUI thread (no processEvents loop);
    # the widget keeps no second copy of a result (only the fused volume's ID).
    for banned in (".connectGui(", "processEvents", "processParameterNode", "_lastOutput"):
        assert banned not in source, banned
    # Nothing heavy at import time: torch and OpenCV load at the first Apply, after the dependency check.
    top_imports = {alias.name.split(".")[0] for node in module_ast.body
                   if isinstance(node, (ast.Import, ast.ImportFrom))
                   for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])}
    assert not top_imports & {"torch", "cv2", "pywt"}


# ---------------------------------------------------------------------------------------------- CMake ------

def _cmake_commands(text):
    """(command, [arguments]) of a CMake file; enough CMake for our files (no quoted-argument escapes)."""
    text = re.sub(r'"[^"]*"|#[^\n]*', lambda m: m.group(0) if m.group(0).startswith('"') else "", text)
    for match in re.finditer(r'(\w+)\s*\(((?:"[^"]*"|[^()"])*)\)', text):
        args = re.findall(r'"[^"]*"|[^\s"]+', match.group(2))
        yield match.group(1), [a[1:-1] if a.startswith('"') else a for a in args]


def _evaluate_module_cmake(path: Path):
    """Evaluate set() and file(GLOB/GLOB_RECURSE) of the module CMakeLists: macro name -> keyword -> files."""
    variables = {"CMAKE_CURRENT_SOURCE_DIR": str(path.parent)}

    def expand(arg):
        return re.sub(r"\$\{(\w+)\}", lambda m: variables.get(m.group(1), ""), arg)

    calls = {}
    for command, args in _cmake_commands(path.read_text(encoding="utf-8")):
        args = [a for arg in args for a in expand(arg).split(";") if a]
        if command == "set":
            variables[args[0]] = ";".join(args[1:])
        elif command == "list" and args[0] == "FILTER":  # list(FILTER var INCLUDE|EXCLUDE REGEX regex)
            name, mode, pattern = args[1], args[2], args[4]
            kept = [item for item in variables.get(name, "").split(";")
                    if item and (re.search(pattern, item) is not None) == (mode == "INCLUDE")]
            variables[name] = ";".join(kept)
        elif command == "file" and args[0] in ("GLOB", "GLOB_RECURSE"):
            recurse, out, rest = args[0] == "GLOB_RECURSE", args[1], args[2:]
            relative = None
            patterns = []
            i = 0
            while i < len(rest):
                if rest[i] == "RELATIVE":
                    relative, i = Path(rest[i + 1]), i + 2
                elif rest[i] in ("CONFIGURE_DEPENDS", "FOLLOW_SYMLINKS"):
                    i += 1
                elif rest[i] == "LIST_DIRECTORIES":
                    i += 2
                else:
                    patterns.append(rest[i])
                    i += 1
            found = []
            for pattern in patterns:
                pattern_path = Path(pattern) if Path(pattern).is_absolute() else path.parent / pattern
                folder, name = pattern_path.parent, pattern_path.name
                candidates = folder.rglob("*") if recurse else folder.glob("*")
                found += sorted(p for p in candidates if p.is_file() and fnmatch.fnmatch(p.name, name))
            variables[out] = ";".join(str(p.relative_to(relative)) if relative else str(p) for p in found)
        else:
            keywords, current = {}, None
            for arg in args:
                if arg.isupper() and arg.replace("_", "").isalpha():
                    current = arg
                    keywords.setdefault(current, [])
                elif current is not None:
                    keywords[current].append(arg)
            calls[command] = keywords
    return calls


def test_module_cmake_lists_existing_files_and_every_library_script():
    calls = _evaluate_module_cmake(MODULE_DIR / "CMakeLists.txt")
    build = calls["slicerMacroBuildScriptedModule"]
    assert build["NAME"] == ["MedFusion"] and "WITH_GENERIC_TESTS" in build
    scripts, resources = build["SCRIPTS"], build["RESOURCES"]
    for listed in scripts + resources:
        assert (MODULE_DIR / listed).is_file(), f"CMake lists a missing file: {listed}"
    assert "MedFusion.py" in scripts
    # Only runtime code in the Slicer package: no command line, training or evaluation (the pip package has them).
    for left_out in ("MedFusionLib/cli.py", "MedFusionLib/data_split.py",
                     "MedFusionLib/evaluation/runner.py", "MedFusionLib/metrics/__init__.py"):
        assert left_out not in scripts, left_out
    # Training lives outside the package Slicer loads, and nothing in that package reaches for it.
    assert not any("Training" in listed for listed in scripts)
    for path in LIB.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "from MedFusionTraining" not in text and "import MedFusionTraining" not in text, path
        assert "def trainable" not in text and "optimizer" not in text, path
    for needed in ("MedFusionLib/__init__.py", "MedFusionLib/logic/__init__.py", "MedFusionLib/logic/parameters.py",
                   "MedFusionLib/logic/inputs.py", "MedFusionLib/logic/outputs.py", "MedFusionLib/engine.py",
                   "MedFusionLib/worker.py", "MedFusionLib/fusion_job.py", "MedFusionLib/slicer_setup.py"):
        assert needed in scripts, needed
    for needed in ("Resources/Icons/MedFusion.png", "Resources/UI/MedFusion.ui", "Resources/requirements.txt"):
        assert needed in resources
    weights = sorted(str(p.relative_to(MODULE_DIR)) for p in (LIB / "weights").glob("*") if p.is_file())
    assert set(weights) <= set(resources)
    assert calls["slicer_add_python_unittest"]["SCRIPT"] == ["MedFusion.py"]


def test_extension_cmake_metadata():
    commands = list(_cmake_commands((ROOT / "CMakeLists.txt").read_text(encoding="utf-8")))
    settings = {args[0]: " ".join(args[1:]) for command, args in commands if command == "set"}
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        assert settings.get(key), key
    assert settings["EXTENSION_DEPENDS"] == "PyTorch"
    assert ("add_subdirectory", ["MedFusion"]) in commands and (ROOT / "MedFusion" / "CMakeLists.txt").is_file()
    prefix = "https://raw.githubusercontent.com/medfusion/SlicerMedFusion/main/"
    for key in ("EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        for url in settings[key].split():
            assert url.startswith(prefix) and (ROOT / url[len(prefix):]).is_file(), url


def test_catalog_entry_licence_and_contributors_are_ready_for_the_extensions_index():
    import json

    commands = list(_cmake_commands((ROOT / "CMakeLists.txt").read_text(encoding="utf-8")))
    settings = {args[0]: " ".join(args[1:]) for command, args in commands if command == "set"}
    project = next(args[0] for command, args in commands if command == "project")
    # The ExtensionsIndex entry (drafted here, submitted to Slicer/ExtensionsIndex as <project>.json).
    entry = json.loads((ROOT / "ExtensionsIndex" / f"{project}.json").read_text(encoding="utf-8"))
    assert entry["category"] == settings["EXTENSION_CATEGORY"]
    assert entry["build_dependencies"] == settings["EXTENSION_DEPENDS"].split()
    assert settings["EXTENSION_HOMEPAGE"].startswith(entry["scm_url"]) and entry["build_subdirectory"] == "."
    assert entry["$schema"].startswith("https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/")
    # The index requires a licence file at the root; pyproject declares Apache-2.0.
    licence = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert "END OF TERMS AND CONDITIONS" in licence and len(licence.splitlines()) > 190
    assert 'license = "Apache-2.0"' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    # Catalog style: "Name (Affiliation)", comma-separated, in the extension and in the module.
    catalog_style = re.compile(r"[^,()]+ \([^()]+\)(, [^,()]+ \([^()]+\))*")
    assert catalog_style.fullmatch(settings["EXTENSION_CONTRIBUTORS"])
    contributors = re.search(r"contributors = \[([^\]]*)\]", MODULE_PY.read_text(encoding="utf-8")).group(1)
    for name in re.findall(r'"([^"]*)"', contributors):
        assert catalog_style.fullmatch(name), name


def test_icons_are_128_pixel_pngs():
    import cv2

    for path in (MODULE_DIR / "Resources" / "Icons" / "MedFusion.png", ROOT / "Resources" / "MedFusion.png"):
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert image is not None and image.shape[:2] == (128, 128), path


# ---------------------------------------------------------------------------------------------- requirements -

_PIP_NAME = {"cv2": "opencv-python-headless", "pywt": "PyWavelets", "tqdm": "tqdm", "skimage": "scikit-image",
             "scipy": "scipy", "matplotlib": "matplotlib", "PIL": "Pillow"}
_SLICER_OWN = {"numpy", "SimpleITK", "vtk", "slicer", "torch", "qt", "ctk"}  # shipped with Slicer / PyTorch ext.


def _optional_imports(tree) -> set:
    """Import nodes inside ``try: ... except ImportError`` blocks: optional, with a fallback or a clear error."""
    optional = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                for h in node.handlers):
            optional |= {n for stmt in node.body for n in ast.walk(stmt) if isinstance(n, (ast.Import, ast.ImportFrom))}
    return optional


def _imports_of(path: Path):
    """(third-party top-level modules imported anywhere in the file, sibling modules imported at module level).

    Imports guarded by ``except ImportError`` are optional and not counted (e.g. matplotlib for named colour
    maps: inside Slicer the logic passes colour tables, never names).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    third_party, local = set(), set()
    optional = _optional_imports(tree)
    for node in ast.walk(tree):
        if node in optional:
            continue
        if isinstance(node, ast.Import):
            third_party |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                third_party.add((node.module or "").split(".")[0])
            elif node in tree.body:  # follow only module-level relative imports (what loads with the module)
                base = path.parent if node.level == 1 else path.parent.parent
                target = base.joinpath(*(node.module or "").split(".")) if node.module else base
                local |= {target.with_suffix(".py")} if target.with_suffix(".py").is_file() else \
                    {target / "__init__.py"} | {target / f"{a.name}.py" for a in node.names}
    return third_party, {p for p in local if p.is_file()}


def test_requirements_cover_the_fusion_path_and_leave_slicer_packages_alone():
    from MedFusionLib.slicer_setup import load_requirements

    names = {r.pip_name.lower() for r in load_requirements(REQUIREMENTS)}
    assert not names & {"torch", "numpy", "simpleitk", "vtk", "opencv-python"}
    # What loads when Slicer fuses: the logic, the engine, and every registered method's module.
    todo = [*(LIB / "logic").glob("*.py"), LIB / "engine.py", LIB / "selftest.py", LIB / "phantom.py",
            LIB / "mrml_convert.py"]
    todo += [LIB / "methods" / f"{info.module}.py" for info in REGISTRY.infos()]
    seen, needed = set(), set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        third_party, local = _imports_of(path)
        needed |= third_party
        todo += list(local)
    if not hasattr(sys, "stdlib_module_names"):
        pytest.skip("needs Python 3.10+ to tell standard-library modules apart")
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    external = {m for m in needed if m and m not in stdlib and m not in _SLICER_OWN}
    unknown = external - set(_PIP_NAME)
    assert not unknown, f"add these to _PIP_NAME and, if Slicer lacks them, to requirements.txt: {unknown}"
    assert {_PIP_NAME[m].lower() for m in external} <= names, (external, names)


def test_the_module_as_built_runs_from_its_cmake_file_list_alone(tmp_path):
    """Install what the CMake lists name (and nothing else) as Slicer's build would, then run the self-test from
    that copy, every registered method and the worker included: a runtime file left out of the package fails."""
    import os
    import shutil
    import subprocess

    try:
        import slicer  # noqa: F401
    except ImportError:  # as in conftest_slicer: skip locally, fail in CI
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("slicer-core is not installed (pip install -e '.[test]')")
    build = _evaluate_module_cmake(MODULE_DIR / "CMakeLists.txt")["slicerMacroBuildScriptedModule"]
    installed = tmp_path / "qt-scripted-modules"
    for listed in build["SCRIPTS"] + build["RESOURCES"]:
        target = installed / listed
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(MODULE_DIR / listed, target)
    code = (
        "import sys, MedFusionLib\n"
        f"assert MedFusionLib.__file__.startswith({str(installed)!r}), MedFusionLib.__file__\n"
        "from conftest_slicer import SlicerContext\n"
        "from MedFusionLib.methods import REGISTRY\n"
        "from MedFusionLib.selftest import run_self_test\n"
        "context = SlicerContext()\n"
        "import slicer; slicer.mrmlScene = context.scene\n"
        "outcome = run_self_test(context.scene, methods=REGISTRY.names(), scale=0.2, device='cpu', log=lambda m: None)\n"
        "assert set(outcome.values()) == {'passed'}, outcome\n"
        "print(sorted(outcome))\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(installed), str(ROOT / "Testing")]))
    run = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "worker" in run.stdout


def test_module_and_runtime_library_parse_as_python_3_9():
    """Slicer 5.4-5.8 run Python 3.9: no newer syntax in what Slicer loads (the module and MedFusionLib)."""
    for path in [MODULE_PY] + sorted(LIB.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 9))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                assert not any(k.arg == "strict" for k in node.keywords), f"{path}:{node.lineno}: zip(strict=)"
            assert not (isinstance(node, ast.keyword) and node.arg in ("slots", "kw_only")), f"{path}: dataclass"
