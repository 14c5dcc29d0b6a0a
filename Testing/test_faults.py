"""Fault injection on real files (issue 16): no input overwritten, no corrupt output reported as success, no
traceback, no library chatter beside the one error sentence.

Faults are real, not mocked: a full disk is a small tmpfs where this machine may mount one (root) and otherwise
a file-size limit (RLIMIT_FSIZE, the writer gets EFBIG exactly as on a full disk); out of memory is an address
space limit (RLIMIT_AS) in a child process; signals are sent to a real ``medfusion`` process while it writes;
corrupted inputs are truncated or damaged copies of the shared volumes.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from MedFusionLib import fuse_volumes, read_volume, write_volume
from MedFusionLib.cli import main
from MedFusionLib.errors import InputError, MedFusionError, WeightsError, WriteError

REPO = Path(__file__).resolve().parents[1]


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _run(argv, capfd):
    code = main([str(a) for a in argv])
    out, err = capfd.readouterr()
    return code, out, err


def _one_error_sentence(err: str, *words: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err  # no ITK / NIfTI / numpy message beside it
    assert lines[0].startswith("medfusion: error: ") and lines[0].endswith("."), lines[0]
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _leftovers(folder: Path):
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith(".medfusion"))


@pytest.fixture(scope="module")
def files(tmp_path_factory, sts_dir, stroke_dir):
    """Small real inputs (CT and MR of one patient, two stroke MR sequences) in a scratch folder."""
    folder = tmp_path_factory.mktemp("faults")
    ct = sitk.ReadImage(str(sts_dir / "CT.nii.gz"))[50:120, 60:130, 10:30]
    mr = sitk.ReadImage(str(sts_dir / "MR_T1.nii.gz"))
    paths = {"ct": folder / "ct.nrrd", "mr": folder / "mr.nii.gz", "ct_gz": folder / "ct.nii.gz"}
    sitk.WriteImage(ct, str(paths["ct"]))
    sitk.WriteImage(mr, str(paths["mr"]))
    sitk.WriteImage(ct, str(paths["ct_gz"]))
    paths["t1"], paths["t2"] = stroke_dir / "T1.nii.gz", stroke_dir / "T2.nii.gz"
    return paths


def _fuse_argv(files, out, *extra):
    return ["fuse", files["ct"], files["mr"], "-o", out, "--method", "average", "-q", *extra]


# ----------------------------------------------------------------------------- outputs onto inputs, each other
@pytest.mark.parametrize("flag", ["-o", "--edges", "--preview"])
def test_no_output_may_overwrite_an_input(files, tmp_path, capfd, flag):
    before = {k: _digest(files[k]) for k in ("ct", "mr")}
    target = files["mr"] if flag != "--preview" else files["ct"]
    argv = _fuse_argv(files, tmp_path / "f.nrrd") if flag != "-o" else _fuse_argv(files, files["ct"])
    if flag != "-o":
        argv += [flag, target]
    code, _, err = _run(argv, capfd)
    assert code == 2
    if flag == "--preview":
        _one_error_sentence(err, "preview")  # .nrrd is no PNG: refused before anything else
    else:
        _one_error_sentence(err, "would overwrite the input")
    assert {k: _digest(files[k]) for k in ("ct", "mr")} == before
    assert not (tmp_path / "f.nrrd").exists()


def test_links_to_an_input_and_two_file_formats_are_caught(files, tmp_path, capfd):
    """A hard link, a symbolic link, and a .nhdr output whose data file would replace an input's data file."""
    os.link(files["ct"], tmp_path / "hard.nrrd")
    (tmp_path / "soft.nrrd").symlink_to(files["ct"])
    for name in ("hard.nrrd", "soft.nrrd"):
        code, _, err = _run(_fuse_argv(files, tmp_path / name), capfd)
        assert code == 2
        _one_error_sentence(err, "would overwrite the input")
    detached = tmp_path / "in"
    detached.mkdir()
    sitk.WriteImage(sitk.ReadImage(str(files["ct"])), str(detached / "ct.nhdr"), True)  # ct.nhdr + ct.raw.gz
    (detached / "ct.nhdr").rename(detached / "header.nhdr")  # its data file keeps the name ct.raw.gz
    data_before = _digest(detached / "ct.raw.gz")
    code, _, err = _run(["fuse", detached / "header.nhdr", files["mr"], "-o", detached / "ct.nhdr",
                         "--method", "average", "-q"], capfd)
    assert code == 2
    _one_error_sentence(err, "would overwrite the input")
    assert _digest(detached / "ct.raw.gz") == data_before


def test_outputs_must_differ_and_the_preview_is_validated_before_any_work(files, harvard_dir, tmp_path, capfd):
    pair = [harvard_dir / "CT-MRI" / "CT" / "2004.png", harvard_dir / "CT-MRI" / "MRI" / "2004.png"]
    same = tmp_path / "fused.png"
    code, _, err = _run(["fuse", *pair, "-o", same, "--preview", same, "--method", "max", "-q"], capfd)
    assert code == 2
    _one_error_sentence(err, "would write the same file")
    code, _, err = _run(_fuse_argv(files, tmp_path / "f.nrrd", "--preview", tmp_path / "no" / "p.png"), capfd)
    assert code == 2
    _one_error_sentence(err, "does not exist")
    assert list(tmp_path.iterdir()) == []  # today the outputs were written, then the preview failed


def test_a_labelmap_is_never_written_lossy(harvard_dir, tmp_path, capfd):
    pair = [harvard_dir / "CT-MRI" / "CT" / "2004.png", harvard_dir / "CT-MRI" / "MRI" / "2004.png"]
    code, _, err = _run(["fuse", *pair, "-o", tmp_path / "f.png", "--edges", tmp_path / "e.jpg", "-q",
                         "--method", "max"], capfd)
    assert code == 2
    _one_error_sentence(err, "lossy")
    assert list(tmp_path.iterdir()) == []


def test_an_output_that_is_a_special_file_is_refused(files, tmp_path, capfd):
    os.mkfifo(tmp_path / "pipe.nrrd")
    code, _, err = _run(_fuse_argv(files, tmp_path / "pipe.nrrd"), capfd)
    assert code == 2
    _one_error_sentence(err, "FIFO")
    assert (tmp_path / "pipe.nrrd").is_fifo()  # not replaced


def test_a_plain_image_output_that_drops_the_geometry_is_a_warning(harvard_dir, tmp_path, capfd):
    """A 2D reference with a real spacing: PNG cannot store it, so the user is told, in one sentence."""
    ct = read_volume(harvard_dir / "CT-MRI" / "CT" / "2004.png")
    mri = read_volume(harvard_dir / "CT-MRI" / "MRI" / "2004.png")
    for image in (ct, mri):
        image.SetSpacing((0.9, 0.9))
    write_volume(ct, tmp_path / "ct.nrrd")
    write_volume(mri, tmp_path / "mri.nrrd")
    code, _, err = _run(["fuse", tmp_path / "ct.nrrd", tmp_path / "mri.nrrd", "-o", tmp_path / "f.png", "-q",
                         "--method", "max"], capfd)
    assert code == 0, err
    assert "origin, spacing and direction are not stored" in err
    code, _, err = _run(["fuse", tmp_path / "ct.nrrd", tmp_path / "mri.nrrd", "-o", tmp_path / "f.nrrd", "-q",
                         "--method", "max"], capfd)
    assert code == 0 and err == ""
    assert read_volume(tmp_path / "f.nrrd").GetSpacing() == (0.9, 0.9)


# ----------------------------------------------------------------------------- full disk
_FSIZE_CHILD = textwrap.dedent("""
    import resource, sys
    from MedFusionLib.cli import main
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # Python ignores SIGXFSZ: writes fail with EFBIG
    sys.exit(main(sys.argv[2:]))
""")


def _tmpfs(folder: Path, size: str) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True)
    return done.returncode == 0


def _fuse_on_a_full_disk(argv, folder: Path, limit: int):
    """Run ``medfusion`` with ``folder`` (holding the outputs) full after ``limit`` bytes; (rc, stderr)."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "MedFusion"))
    if _tmpfs(folder, str(limit)):
        try:
            for name, data in FULL_DISK_PREVIOUS.items():
                (folder / name).write_bytes(data)
            done = subprocess.run([sys.executable, "-m", "MedFusionLib", *map(str, argv)], capture_output=True,
                                  text=True, timeout=300, env=env)
            return done.returncode, done.stderr, {p.name: p.read_bytes() for p in folder.iterdir()}, "tmpfs"
        finally:
            subprocess.run(["umount", str(folder)], check=False)
    folder.mkdir(exist_ok=True)
    for name, data in FULL_DISK_PREVIOUS.items():
        (folder / name).write_bytes(data)
    done = subprocess.run([sys.executable, "-c", _FSIZE_CHILD, str(limit), *map(str, argv)], capture_output=True,
                          text=True, timeout=300, env=env)
    return done.returncode, done.stderr, {p.name: p.read_bytes() for p in folder.iterdir()}, "RLIMIT_FSIZE"


FULL_DISK_PREVIOUS = {"fused.nii": b"the user's previous result", "fused.nii.gz": b"previous, compressed",
                      "fused.mhd": b"ObjectType = Image\n", "fused.zraw": b"previous data file"}


@pytest.mark.parametrize("name", ["fused.nii", "fused.nii.gz", "fused.mhd"])
def test_full_disk_keeps_the_previous_output_and_reports_an_error(files, tmp_path, name):
    """ITK's NIfTI writer leaves a short file on a full disk without raising: the read-back must catch it."""
    folder = tmp_path / "disk"
    code, err, after, how = _fuse_on_a_full_disk(_fuse_argv(files, folder / name), folder, 64 * 1024)
    assert code == 2, (how, err)
    _one_error_sentence(err, "Could not write", "nothing was changed")
    assert after == FULL_DISK_PREVIOUS, how  # previous files intact, nothing new, no staging folder left


def test_edges_failing_after_the_fused_output_restores_nothing_lost(files, tmp_path):
    """The fused output fits, the edge labelmap does not: the previous fused file must survive untouched."""
    folder = tmp_path / "disk"
    argv = _fuse_argv(files, folder / "fused.nii.gz", "--edges", folder / "edges.nii",
                      "--preset-a", "manual:5000:6000", "--preset-b", "manual:5000:6000")  # fused: all 0, tiny
    code, err, after, how = _fuse_on_a_full_disk(argv, folder, 48 * 1024)  # edges.nii needs 98 kB
    assert code == 2, (how, err)
    _one_error_sentence(err, "edge labelmap", "nothing was changed")
    assert after == FULL_DISK_PREVIOUS, how


def test_a_failure_while_committing_puts_the_previous_fused_file_back(files, tmp_path):
    """The fused file is already in place when the edge labelmap cannot be: a folder appears at its path
    (made by another program between the checks and the final renames). The user's previous result returns."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "MedFusion"))
    for attempt in range(3):  # the folder must appear in the ~10 ms between staging the edges and committing
        folder = tmp_path / f"try{attempt}"
        folder.mkdir()
        fused, edges = folder / "fused.nrrd", folder / "edges.nii"
        fused.write_bytes(b"previous result")
        process = subprocess.Popen([sys.executable, "-m", "MedFusionLib", "fuse", str(files["t1"]),
                                    str(files["t2"]), "-o", str(fused), "--edges", str(edges), "--method",
                                    "average", "-q"], stderr=subprocess.PIPE, text=True, env=env)
        while process.poll() is None:
            if len([p for p in folder.glob(".medfusion-*") if p.is_dir()]) == 2:  # both outputs staged
                edges.mkdir()
                break
            time.sleep(0.0005)
        _, err = process.communicate(timeout=240)
        if process.returncode != 0:
            break
    assert process.returncode == 2, err
    _one_error_sentence(err, "every previous file was restored")
    assert fused.read_bytes() == b"previous result"
    assert edges.is_dir() and list(edges.iterdir()) == []
    assert _leftovers(folder) == []


# ----------------------------------------------------------------------------- signals during the write
def _fuse_signalled_when(files, out: Path, ready, sig):
    """Run `medfusion fuse` (average, T1 + T2) in a child and send it ``sig`` as soon as ``ready()``; returns
    whether it was sent, the exit status and stderr."""
    out.write_bytes(b"previous result")
    env = dict(os.environ, PYTHONPATH=str(REPO / "MedFusion"))
    process = subprocess.Popen([sys.executable, "-m", "MedFusionLib", "fuse", str(files["t1"]), str(files["t2"]),
                                "-o", str(out), "--method", "average", "-q"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, env=env)
    sent = False
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if ready():
            process.send_signal(sig)
            sent = True
            break
        time.sleep(0.001)
    _, err = process.communicate(timeout=240)
    return sent, process.returncode, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_write_leaves_the_previous_output(files, tmp_path, sig):
    out = tmp_path / "fused.nii.gz"
    # Once staging has begun, the write is running.
    _, returncode, err = _fuse_signalled_when(files, out, lambda: any(p.is_dir() for p in tmp_path.glob(
        ".medfusion-*")), sig)
    assert "Traceback" not in err
    assert _leftovers(tmp_path) == []
    if returncode == 0:  # the signal came during the final renames: they completed
        assert read_volume(out).GetSize() == sitk.ReadImage(str(files["t1"])).GetSize()
    else:
        assert returncode == 130, err
        assert out.read_bytes() == b"previous result"
        assert "interrupted" in err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_once_the_output_is_in_place_is_not_reported_as_nothing_written(files, tmp_path, sig):
    out = tmp_path / "fused.nii.gz"
    # Once the final rename is done, only reporting and the exit remain.
    sent, returncode, err = _fuse_signalled_when(files, out, lambda: out.stat().st_size != len(b"previous result"),
                                                 sig)
    assert sent, "the command ended before the test could signal it"
    assert (returncode, err) == (0, ""), err
    assert read_volume(out).GetSize() == sitk.ReadImage(str(files["t1"])).GetSize()
    assert _leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- corrupted inputs
def _truncated_copy(source: Path, target: Path, keep: float) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * keep)])
    return target


@pytest.mark.parametrize("case", ["truncated nii.gz", "damaged gzip nrrd", "short raw nrrd", "short mhd data"])
def test_corrupted_inputs_are_refused(files, tmp_path, capfd, case):
    if case == "truncated nii.gz":
        bad = _truncated_copy(files["ct_gz"], tmp_path / "ct.nii.gz", 0.6)
        word = "truncated"
    elif case == "damaged gzip nrrd":
        bad = tmp_path / "ct.nrrd"
        sitk.WriteImage(sitk.ReadImage(str(files["ct"])), str(bad), True)
        data = bytearray(bad.read_bytes())
        middle = data.index(b"\n\n") + (len(data) - data.index(b"\n\n")) // 2
        data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
        bad.write_bytes(bytes(data))
        word = "damaged"
    elif case == "short raw nrrd":
        bad = tmp_path / "raw.nrrd"
        sitk.WriteImage(sitk.ReadImage(str(files["ct"])), str(bad), False)
        bad.write_bytes(bad.read_bytes()[:-5000])
        word = "truncated"
    else:
        bad = tmp_path / "ct.mhd"
        sitk.WriteImage(sitk.ReadImage(str(files["ct"])), str(bad), False)
        raw = tmp_path / "ct.raw"
        raw.write_bytes(raw.read_bytes()[:-5000])
        word = "truncated"
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = _run(["fuse", bad, files["mr"], "-o", out / "f.nrrd", "-q", "--method", "average"], capfd)
    assert code == 2
    _one_error_sentence(err, word)
    assert list(out.iterdir()) == []


def _read_in_child(path):
    """read_volume(path) in a child process (a blocked read holds the GIL, so no thread could time it out)."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "MedFusion"))
    script = "import sys\nfrom MedFusionLib import read_volume\nread_volume(sys.argv[1])"
    try:
        done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True,
                              timeout=60, env=env)
    except subprocess.TimeoutExpired:
        return False, ""
    return True, done.stderr


def test_fifos_are_refused_without_blocking(files, tmp_path):
    fifo = tmp_path / "pipe.nii"
    os.mkfifo(fifo)
    header = tmp_path / "ct.nhdr"
    sitk.WriteImage(sitk.ReadImage(str(files["ct"])), str(header), False)
    (tmp_path / "ct.raw").unlink()
    os.mkfifo(tmp_path / "ct.raw")  # the header's data file is a FIFO
    series = tmp_path / "series"
    series.mkdir()
    os.mkfifo(series / "slice.dcm")
    for path in (fifo, header, series):
        finished, err = _read_in_child(path)
        assert finished, f"reading {path} blocked"
        assert "InputError" in err and "FIFO" in err, err


# ----------------------------------------------------------------------------- geometry
def test_dicom_series_with_a_missing_slice_is_refused(sts_dir, tmp_path):
    from test_io import _write_dicom_series

    ct = sitk.ReadImage(str(sts_dir / "CT.nii.gz"))[50:90, 60:100, 10:20]
    _write_dicom_series(ct, tmp_path / "dicom")
    (tmp_path / "dicom" / "slice005.dcm").unlink()
    with pytest.raises(InputError, match="missing or unevenly spaced slices"):
        read_volume(tmp_path / "dicom")


def test_singular_and_non_finite_geometry_is_refused(files, tmp_path):
    header = (tmp_path / "ct.nrrd")
    shutil.copy(files["ct"], header)
    text = header.read_bytes()
    start = text.index(b"space directions:")
    end = text.index(b"\n", start)
    header.write_bytes(text[:start] + b"space directions: (1,0,0) (1,0,0) (0,0,3)" + text[end:])
    with pytest.raises(InputError, match="singular"):
        read_volume(header)
    ct = read_volume(files["ct"])
    moved = sitk.Image(ct)
    moved.SetOrigin((float("nan"), 0.0, 0.0))
    with pytest.raises(InputError, match="non-finite origin"):
        fuse_volumes(moved, ct, method="average")


def test_a_format_that_cannot_hold_the_geometry_is_an_error_not_a_silent_change(files, tmp_path, capfd):
    """NIfTI stores an orthogonal direction only: ITK coerces a sheared one with a printed warning."""
    sheared = sitk.Image(read_volume(files["ct"]))
    shear = np.radians(15.0)  # the second index axis leans 15 degrees towards the first: unit, not orthogonal
    sheared.SetDirection((1.0, np.sin(shear), 0.0, 0.0, np.cos(shear), 0.0, 0.0, 0.0, 1.0))
    with pytest.raises(InputError, match="cannot hold this volume's direction"):
        write_volume(sheared, tmp_path / "sheared.nii")
    assert list(tmp_path.iterdir()) == []
    out, err = capfd.readouterr()
    assert "WARNING" not in err and "Non-orthogonal" not in err  # ITK's own message stays off the terminal
    back = read_volume(write_volume(sheared, tmp_path / "sheared.nrrd"))
    np.testing.assert_allclose(back.GetDirection(), sheared.GetDirection(), rtol=0, atol=1e-12)


def test_2d_pairs_of_different_sizes_are_not_fused_from_the_corner(harvard_dir, tmp_path):
    import cv2

    small = tmp_path / "small.png"
    mri = cv2.imread(str(harvard_dir / "CT-MRI" / "MRI" / "2004.png"), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(small), cv2.resize(mri, (128, 128)))
    with pytest.raises(InputError, match="different sizes"):
        fuse_volumes(read_volume(harvard_dir / "CT-MRI" / "CT" / "2004.png"), read_volume(small), method="max")


def test_values_near_the_float32_limit_are_not_silently_zeroed(files):
    """Windowing is scale invariant: CT x 1e35 (still float32) must fuse like the CT itself."""
    ct, mr = read_volume(files["ct"]), read_volume(files["mr"])
    scaled = sitk.GetImageFromArray(sitk.GetArrayFromImage(ct).astype(np.float32) * np.float32(1e35))
    scaled.CopyInformation(ct)
    reference = fuse_volumes(ct, mr, method="average", preset_a="mr", edges=False)
    result = fuse_volumes(scaled, mr, method="average", preset_a="mr", edges=False)
    np.testing.assert_allclose(sitk.GetArrayFromImage(result.fused), sitk.GetArrayFromImage(reference.fused),
                               atol=1e-5)
    # B beyond float32 altogether (float64 x 1e300), resampled onto A's grid: still the same fusion.
    huge = sitk.Cast(mr, sitk.sitkFloat64) * 1e300
    result = fuse_volumes(ct, huge, method="average", preset_a="mr", edges=False)
    np.testing.assert_allclose(sitk.GetArrayFromImage(result.fused), sitk.GetArrayFromImage(reference.fused),
                               atol=1e-5)


# ----------------------------------------------------------------------------- method output and options
def test_non_finite_network_output_is_refused(harvard_dir, tmp_path, capfd):
    """MFEnet with edge_weight 1e300: float32 turns it to inf and 0 * inf to NaN; clamping used to hide it."""
    pair = [harvard_dir / "CT-MRI" / "CT" / "2004.png", harvard_dir / "CT-MRI" / "MRI" / "2004.png"]
    code, _, err = _run(["fuse", *pair, "-o", tmp_path / "f.nrrd", "--method", "mfenet", "--option",
                         "edge_weight=1e300", "--device", "cpu", "-q"], capfd)
    assert code == 2
    _one_error_sentence(err, "not finite")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option,words", [("levels=abc", "whole number"), ("levels=2.5", "whole number"),
                                          ("wavelet=5", "a name"), ("levels=0", "at least 1")])
def test_method_options_of_the_wrong_type_are_one_sentence(files, tmp_path, capfd, option, words):
    code, _, err = _run(["fuse", files["ct"], files["mr"], "-o", tmp_path / "f.nrrd", "--method", "dwt",
                         "--option", option, "-q"], capfd)
    assert code == 2
    _one_error_sentence(err, words)
    with pytest.raises(InputError, match="whole number"):
        fuse_volumes(read_volume(files["ct"]), read_volume(files["mr"]), method="laplacian",
                     method_options={"levels": "4"})


@pytest.mark.parametrize("call,words", [
    (lambda ct, p: fuse_volumes(str(p["ct"]), str(p["mr"])), "SimpleITK image"),
    (lambda ct, p: fuse_volumes(ct, ct, batch_size="4"), "whole number"),
    (lambda ct, p: fuse_volumes(ct, ct, axis=2), "a string"),
    (lambda ct, p: fuse_volumes(ct, ct, progress="yes"), "a function"),
    (lambda ct, p: fuse_volumes(ct, ct, method_options=[("levels", 2)]), "a dict"),
    (lambda ct, p: write_volume(sitk.GetArrayFromImage(ct), p["ct"].parent / "x.nrrd"), "SimpleITK image"),
    (lambda ct, p: read_volume(None), "path"),
], ids=["paths", "batch", "axis", "progress", "options", "write array", "read None"])
def test_bad_api_argument_types_are_one_sentence(files, call, words):
    with pytest.raises(InputError, match=words):
        call(read_volume(files["ct"]), files)


# ----------------------------------------------------------------------------- demo and weights
@pytest.mark.parametrize("argv,words", [(["--scale", "0"], "--scale"), (["--scale", "nan"], "--scale"),
                                        (["--out", "FILE"], "is a file")])
def test_demo_argument_errors_are_one_sentence(tmp_path, capfd, argv, words):
    (tmp_path / "file.txt").write_text("mine")
    argv = [a if a != "FILE" else str(tmp_path / "file.txt") for a in argv]
    code, _, err = _run(["demo", *argv] + ([] if "--out" in argv else ["--out", str(tmp_path / "demo")]), capfd)
    assert code == 2
    _one_error_sentence(err, words)
    assert (tmp_path / "file.txt").read_text() == "mine"


@pytest.mark.parametrize("entries,words", [
    ([1], "not an object"),
    ([{"method": "mfenet", "sha256": "00"}], "no text 'file'"),
    ([{"method": "mfenet", "file": "../outside/mfenet.pt", "sha256": "SHA"}], "not a plain name"),
    ({"mfenet": "mfenet.pt"}, "not a list"),
])
def test_malformed_manifests_are_one_sentence(tmp_path, entries, words):
    from MedFusionLib.weights_store import WEIGHTS_DIR, load_state_dict, sha256_file

    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(WEIGHTS_DIR / "mfenet.pt", outside / "mfenet.pt")
    weights = tmp_path / "weights"
    weights.mkdir()
    text = json.dumps({"format": 1, "entries": entries}).replace("SHA", sha256_file(outside / "mfenet.pt"))
    (weights / "manifest.json").write_text(text)
    with pytest.raises(WeightsError, match=words) as caught:
        load_state_dict("mfenet", weights_dir=weights)
    assert str(caught.value).endswith(".")


# ----------------------------------------------------------------------------- out of memory on the CPU
_OOM_CHILD = textwrap.dedent("""
    import resource, sys
    import SimpleITK as sitk
    import torch
    from MedFusionLib.cli import main
    from MedFusionLib.engine import fuse_volumes
    # oneDNN does not always check its allocations (a segfault under the limit); torch's own kernels do.
    torch.backends.mkldnn.enabled = False
    method, headroom, a, b, out, batch = sys.argv[1:7]
    A, B = sitk.ReadImage(a), sitk.ReadImage(b)
    middle = A.GetDepth() // 2
    # torch, its threads (the registration check's too) and the weights are loaded before the limit, on the
    # central 16 x 16 of a slice: a fusion keeps its freed memory in the heap (heap.py), and a whole warm-up
    # slice could leave that much address space free inside the heap, counted in VmSize below, for the limited
    # run to use (it then fused where it should have run out, now and then).
    x, y = A.GetWidth() // 2 - 8, A.GetHeight() // 2 - 8
    fuse_volumes(A[x:x + 16, y:y + 16, middle:middle + 1], B[x:x + 16, y:y + 16, middle:middle + 1], method=method,
                 device="cpu", edges=False, precision="fp32")
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    in_use = int(status["VmSize"].split()[0]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (in_use + (int(headroom) << 20), resource.RLIM_INFINITY))
    sys.exit(main(["fuse", a, b, "-o", out, "--method", method, "--batch", batch, "--device", "cpu",
                   "--precision", "fp32", "-q"]))
""")


def _fuse_with_memory_limit(method, headroom_mb, a, b, out, batch):
    env = dict(os.environ, PYTHONPATH=str(REPO / "MedFusion"), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", _OOM_CHILD, method, str(headroom_mb), str(a), str(b), str(out),
                           str(batch)], capture_output=True, text=True, timeout=500, env=env)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux")
def test_cpu_out_of_memory_halves_the_batch(stroke_dir, tmp_path):
    """DWT on all 140 slices of the stroke pair at once needs about 150 MB more than the limit allows."""
    out = tmp_path / "fused.nrrd"
    done = _fuse_with_memory_limit("dwt", 60, stroke_dir / "T1.nii.gz", stroke_dir / "T2.nii.gz", out, 140)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
    assert "CPU out of memory: batch size reduced" in done.stderr
    reference = fuse_volumes(read_volume(stroke_dir / "T1.nii.gz"), read_volume(stroke_dir / "T2.nii.gz"),
                             method="dwt", edges=False)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_volume(out)), sitk.GetArrayFromImage(reference.fused))


@pytest.fixture(scope="module")
def stroke_crop(tmp_path_factory, stroke_dir):
    folder = tmp_path_factory.mktemp("oom")
    for name in ("T1", "T2"):
        sitk.WriteImage(sitk.ReadImage(str(stroke_dir / f"{name}.nii.gz"))[20:100, 40:120, 60:76],
                        str(folder / f"{name}.nrrd"))
    return folder


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux")
def test_cpu_out_of_memory_at_one_slice_fails_in_one_sentence(stroke_crop, tmp_path):
    """MFEnet needs tens of MB for one slice; with 8 MB to spare it cannot run at all."""
    out = tmp_path / "fused.nrrd"
    done = _fuse_with_memory_limit("mfenet", 8, stroke_crop / "T1.nrrd", stroke_crop / "T2.nrrd", out, 16)
    assert done.returncode == 2, done.stderr
    _one_error_sentence(done.stderr, "memory", "Nothing was written")
    assert list(tmp_path.iterdir()) == []


def test_library_messages_stay_off_the_terminal(sts_dir, tmp_path, capfd):
    """Reading a DICOM series with a gap used to print ITK's 'Non uniform sampling' warning beside ours."""
    from test_io import _write_dicom_series

    ct = sitk.ReadImage(str(sts_dir / "CT.nii.gz"))[50:90, 60:100, 10:20]
    _write_dicom_series(ct, tmp_path / "dicom")
    (tmp_path / "dicom" / "slice004.dcm").unlink()
    code, _, err = _run(["fuse", tmp_path / "dicom", sts_dir / "CT.nii.gz", "-o", tmp_path / "f.nrrd", "-q"], capfd)
    assert code == 2
    _one_error_sentence(err, "missing or unevenly spaced")
    assert isinstance(WriteError("x"), MedFusionError)
