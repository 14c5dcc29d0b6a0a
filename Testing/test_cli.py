"""The command line: real fusions, the one-line summary, and the bad-input table (exit 2, one sentence, no file)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from MedFusionLib.cli import main


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, sts_dir, harvard_dir):
    """Small real volumes written to a scratch folder, plus crafted bad inputs."""
    folder = tmp_path_factory.mktemp("inputs")
    ct = sitk.ReadImage(str(sts_dir / "CT.nii.gz"))[0:120, 40:160, 20:32]  # partly outside the MR
    mr = sitk.ReadImage(str(sts_dir / "MR_T1.nii.gz"))
    paths = {"ct": folder / "ct.nrrd", "mr": folder / "mr.nii.gz"}
    sitk.WriteImage(ct, str(paths["ct"]))
    sitk.WriteImage(mr, str(paths["mr"]))
    paths["png"] = harvard_dir / "CT-MRI" / "CT" / "2004.png"

    (folder / "garbage.nii.gz").write_bytes(b"this is not an image")
    paths["garbage"] = folder / "garbage.nii.gz"
    paths["4d"] = folder / "four_d.nii.gz"
    sitk.WriteImage(sitk.JoinSeries([ct] * 2), str(paths["4d"]))
    paths["empty"] = folder / "empty.mha"  # a valid header describing a 4 x 4 x 0 volume
    paths["empty"].write_text("ObjectType = Image\nNDims = 3\nDimSize = 4 4 0\nElementType = MET_FLOAT\n"
                              "ElementDataFile = LOCAL\n")

    def like_ct(values, name):
        image = sitk.GetImageFromArray(np.full(sitk.GetArrayFromImage(ct).shape, values, np.float32))
        image.CopyInformation(ct)
        sitk.WriteImage(image, str(folder / name))
        return folder / name

    paths["constant"] = like_ct(100.0, "constant.nrrd")
    paths["nan"] = like_ct(np.nan, "nan.nrrd")
    far = sitk.Image(mr)
    far.SetOrigin([c + 10000.0 for c in mr.GetOrigin()])
    paths["far"] = folder / "far.nrrd"
    sitk.WriteImage(far, str(paths["far"]))
    return paths


def _not_writable_folder(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        return locked
    return Path("/sys")  # root can write almost anywhere, but not into sysfs


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_fuse_writes_volume_and_edges_in_the_reference_geometry(inputs, tmp_path, capsys):
    out, edges = tmp_path / "fused.nrrd", tmp_path / "edges.nrrd"
    code, stdout, stderr = _run(["fuse", inputs["ct"], inputs["mr"], "-o", out, "--method", "laplacian",
                                 "--preset-a", "ct:soft", "--preset-b", "mr", "--edges", edges, "-q"], capsys)
    assert code == 0, stderr
    ct = sitk.ReadImage(str(inputs["ct"]))
    for path in (out, edges):
        image = sitk.ReadImage(str(path))
        assert image.GetSize() == ct.GetSize()
        assert image.GetOrigin() == ct.GetOrigin() and image.GetDirection() == ct.GetDirection()
        np.testing.assert_allclose(image.GetSpacing(), ct.GetSpacing(), rtol=0, atol=0)
    assert set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(edges))))) <= {0, 1, 2, 3}
    # One summary line: method, device, slices, seconds, overlap.
    summary = [line for line in stdout.splitlines() if line.startswith("medfusion:")]
    assert len(summary) == 1
    for word in ("laplacian", "cpu", "12 axial slice", " s,", "overlap"):
        assert word in summary[0]
    assert "field of view" in stderr  # partial MR coverage is reported


def test_methods_lists_every_method_with_its_reference(capsys):
    code, stdout, _ = _run(["methods"], capsys)
    assert code == 0
    for name in ("average", "max", "pca", "laplacian", "dwt", "gff"):
        assert any(line.strip().startswith(name) for line in stdout.splitlines())
    assert stdout.count("Reference:") >= 6


def test_methods_are_listed_under_their_family_titles(capsys):
    from MedFusionLib.methods import FAMILIES, REGISTRY

    code, stdout, _ = _run(["methods"], capsys)
    assert code == 0
    lines = stdout.splitlines()
    titles = [line for line in lines if line and not line.startswith(" ")]
    assert titles == [t for k, t in FAMILIES.items() if any(i.family == k for i in REGISTRY.infos())]
    for info in REGISTRY.infos():  # each method is listed after its own family's title and before the next one
        row = next(n for n, line in enumerate(lines) if line.split()[:1] == [info.name])
        above = [line for line in lines[:row] if line and not line.startswith(" ")]
        assert above[-1] == FAMILIES[info.family], info.name


def test_same_file_twice_is_allowed_with_a_warning(inputs, tmp_path, capsys):
    out = tmp_path / "self.nrrd"
    code, _, stderr = _run(["fuse", inputs["ct"], inputs["ct"], "-o", out, "-q"], capsys)
    assert code == 0 and out.exists()
    assert "given twice" in stderr


BAD_INPUTS = [
    # (case, argv builder, expected words in the message)
    ("missing file", lambda p, t: [t / "nope.nrrd", p["mr"]], "does not exist"),
    ("unreadable file", lambda p, t: [p["garbage"], p["mr"]], "Cannot read"),
    ("2D with 3D", lambda p, t: [p["ct"], p["png"]], "2D image"),
    ("4D image", lambda p, t: [p["4d"], p["mr"]], "4 dimensions"),
    ("empty volume", lambda p, t: [p["empty"], p["mr"]], "is empty"),
    ("constant volume", lambda p, t: [p["constant"], p["mr"]], "is constant"),
    ("NaN-filled volume", lambda p, t: [p["ct"], p["nan"]], "no finite values"),
    ("no overlap", lambda p, t: [p["ct"], p["far"]], "do not overlap"),
    ("unknown method", lambda p, t: [p["ct"], p["mr"], "--method", "magic"], "Unknown fusion method"),
    ("unknown preset", lambda p, t: [p["ct"], p["mr"], "--preset-a", "ct:liver"], "Unknown CT window"),
    ("unknown preset kind", lambda p, t: [p["ct"], p["mr"], "--preset-b", "xray"], "Unknown intensity preset"),
    ("bad option", lambda p, t: [p["ct"], p["mr"], "--method", "laplacian", "--option", "depth=3"], "has no option"),
    ("no CUDA", lambda p, t: [p["ct"], p["mr"], "--device", "cuda"], "CUDA"),
]


@pytest.mark.parametrize("case,build,words", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_inputs_exit_2_with_one_sentence_and_no_file(case, build, words, inputs, tmp_path, capsys):
    if case == "no CUDA":
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is present: CUDA is not an error here")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv = ["fuse", *build(inputs, tmp_path), "-o", out_dir / "fused.nrrd", "--edges", out_dir / "edges.nrrd", "-q"]
    code, stdout, stderr = _run(argv, capsys)
    assert code == 2, (case, stdout, stderr)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("medfusion: error: "), stderr
    assert words in lines[0] and lines[0].endswith("."), lines[0]
    assert "Traceback" not in stderr
    assert list(out_dir.iterdir()) == [], f"{case} left files behind"


def test_output_not_writable(inputs, tmp_path, capsys):
    target = _not_writable_folder(tmp_path) / "fused.nrrd"
    code, _, stderr = _run(["fuse", inputs["ct"], inputs["mr"], "-o", target, "-q"], capsys)
    assert code == 2 and "not writable" in stderr
    assert not target.exists()


def test_output_folder_missing(inputs, tmp_path, capsys):
    code, _, stderr = _run(["fuse", inputs["ct"], inputs["mr"], "-o", tmp_path / "no" / "f.nrrd"], capsys)
    assert code == 2 and "does not exist" in stderr


def test_console_script_runs_as_a_process(inputs, tmp_path):
    """The installed entry point, as a user runs it: exit code and stderr from a real process."""
    out = tmp_path / "fused.nii.gz"
    ok = subprocess.run([sys.executable, "-m", "MedFusionLib", "fuse", str(inputs["ct"]), str(inputs["mr"]),
                         "-o", str(out), "--method", "dwt", "-q"], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert out.exists()
    bad = subprocess.run([sys.executable, "-m", "MedFusionLib", "fuse", str(tmp_path / "missing.nrrd"),
                          str(inputs["mr"]), "-o", str(tmp_path / "x.nrrd")], capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("medfusion: error: File") and "Traceback" not in bad.stderr
