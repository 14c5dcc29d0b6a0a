"""`medfusion evaluate`: real fusions of real shared pairs and volumes, checked against direct computations.

The main run (2 pairs per Harvard folder, 3 methods, all 17 metrics, 2 scoring processes) is shared by the
report tests; the other runs use one or two cheap metrics to stay quick.
"""
from __future__ import annotations

import contextlib
import csv
import io
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import SimpleITK as sitk

from conftest import harvard_pair
from MedFusionLib.cli import main
from MedFusionLib.colour import luminance
from MedFusionLib.evaluation.pairs import case_of, discover, natural_key, select
from MedFusionLib.metrics import METRICS, evaluate_all

FOLDERS = ("CT-MRI", "PET-MRI", "SPECT-MRI")
METHODS = ("average", "max", "laplacian")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_cli(argv):
    """(exit code, stdout, stderr) of `medfusion ...` run in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def read_csv(path: Path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def first_names(folder: Path, n: int):
    """The first n file names of a folder in (case, slice) order, computed independently of the harness."""
    names = sorted((p.name for p in folder.iterdir()), key=lambda name: int(Path(name).stem))
    return names[:n]


@pytest.fixture(scope="module")
def main_run(harvard_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate") / "out"
    code, stdout, stderr = run_cli(["evaluate", harvard_dir, "--methods", ",".join(METHODS), "--limit", 2,
                                    "--out", out, "--save-fused", "--threads", 1, "--jobs", 2, "-q"])
    assert code == 0, stderr
    return {"out": out, "stdout": stdout, "stderr": stderr, "rows": read_csv(out / "results.csv")}


# ------------------------------------------------------------------------------------------ results.csv


def test_csv_has_one_row_per_pair_and_method_with_every_metric(main_run, harvard_dir):
    rows = main_run["rows"]
    assert list(rows[0]) == ["pair", "image", "method", "seconds", *METRICS]
    expected = {(folder, name, method) for folder in FOLDERS
                for name in first_names(harvard_dir / folder / "MRI", 2) for method in METHODS}
    assert len(rows) == len(expected) == 18
    assert [r["method"] for r in rows[:3]] == list(METHODS)  # by pair, then method
    assert {(r["pair"], r["image"], r["method"]) for r in rows} == expected
    for row in rows:
        seconds = float(row["seconds"])
        assert 0.0 < seconds < 10.0
        assert all(np.isfinite(float(row[m])) for m in METRICS), row


def test_csv_scores_match_a_direct_computation_for_a_grey_pair(main_run, harvard_dir):
    """CT-MRI with average: the engine's fused image, rounded to 8 bits as saved, scored against CT and MRI."""
    from MedFusionLib.engine import fuse_volumes

    name = first_names(harvard_dir / "CT-MRI" / "CT", 1)[0]
    ct, mri = harvard_pair("CT-MRI", name)
    row = next(r for r in main_run["rows"] if r["pair"] == "CT-MRI" and r["method"] == "average" and r["image"] == name)
    fused = sitk.GetArrayFromImage(fuse_volumes(sitk.ReadImage(str(harvard_dir / "CT-MRI" / "CT" / name)),
                                                sitk.ReadImage(str(harvard_dir / "CT-MRI" / "MRI" / name)),
                                                method="average", edges=False).fused)
    np.testing.assert_allclose(fused, 0.5 * (ct + mri), atol=1e-6)  # it is the average
    saved = np.rint(fused * 255) / 255
    # Continuous metrics only: Q_ABF (the sign of an exactly-zero Sobel response), EN/MI/NMI (rounding of
    # exact half grey levels) can jump with the last bit of x / 255 versus the engine's x * (1 / 255).
    expected = evaluate_all(ct, mri, saved, ["SSIM", "CC", "PSNR", "VIFF", "SF", "FMI_pixel"])
    for metric, value in expected.items():
        assert float(row[metric]) == pytest.approx(value, rel=1e-6, abs=1e-9), metric


def test_colour_pairs_are_scored_on_luminance(main_run, harvard_dir):
    name = first_names(harvard_dir / "PET-MRI" / "PET", 1)[0]
    fused_path = main_run["out"] / "fused" / "laplacian" / "PET-MRI" / name
    fused_rgb = cv2.imread(str(fused_path), cv2.IMREAD_UNCHANGED)[..., ::-1]
    fused_y = luminance(fused_rgb.astype(np.float32) / 255.0)
    pet_y, mri = harvard_pair("PET-MRI", name)  # the PET's BT.601 Y, the MRI on [0, 1]
    expected = evaluate_all(mri, pet_y, fused_y, ["SSIM", "CC", "VIFF", "EI", "SD"])  # continuous metrics
    row = next(r for r in main_run["rows"] if r["pair"] == "PET-MRI" and r["method"] == "laplacian"
               and r["image"] == name)
    for metric, value in expected.items():
        assert float(row[metric]) == pytest.approx(value, rel=1e-5), metric
    # ... and not on the red channel, say: that would give another number.
    red = evaluate_all(mri, pet_y, fused_rgb[..., 0].astype(np.float32) / 255.0, ["CC"])["CC"]
    assert abs(float(row["CC"]) - red) > 1e-3
    note = "Colour PET/SPECT pairs are scored on luminance"
    assert note in main_run["stdout"]
    assert note in (main_run["out"] / "results.md").read_text()


# ------------------------------------------------------------------------------------------ results.md


def parse_tables(markdown: str):
    """{section title: {method: {column: cell text}}} from the report's markdown tables."""
    tables, title, header = {}, None, None
    for line in markdown.splitlines():
        if line.startswith("## "):
            title = re.sub(r" \(\d+ pairs\)$", "", line[3:])
            header = None
        elif line.startswith("|") and title is not None:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if header is None:
                header = [re.sub(r" [↑↓]$", "", c) for c in cells]
            elif not set(cells[0]) <= set("-"):
                tables.setdefault(title, {})[cells[0].strip("`")] = dict(zip(header[1:], cells[1:]))
    return tables


def test_markdown_bolds_the_best_mean_of_every_column(main_run):
    rows = main_run["rows"]
    tables = parse_tables((main_run["out"] / "results.md").read_text())
    assert set(tables) == {*FOLDERS, "Overall"}
    for title, table in tables.items():
        subset = [r for r in rows if title == "Overall" or r["pair"] == title]
        assert set(table) == set(METHODS)
        for column in ["s/slice", *METRICS]:
            key = "seconds" if column == "s/slice" else column
            higher = False if key == "seconds" else METRICS[key].higher_is_better
            means = {m: np.mean([float(r[key]) for r in subset if r["method"] == m]) for m in METHODS}
            best = max(means.values()) if higher else min(means.values())
            expected = {m for m, v in means.items() if np.isclose(v, best, rtol=1e-9, atol=0)}
            bold = {m for m in METHODS if table[m][column].startswith("**")}
            assert bold == expected, (title, column, means, bold)
            for method in METHODS:  # the mean shown is the CSV's mean
                shown = float(table[method][column].strip("*").split(" ± ")[0])
                assert shown == pytest.approx(means[method], rel=0.01, abs=1e-4), (title, column, method)


def test_markdown_states_the_conventions(main_run):
    text = (main_run["out"] / "results.md").read_text()
    assert "Command: `medfusion evaluate " in text and "--limit 2" in text
    assert "256x256 slice" in text and "time.perf_counter" in text
    assert "reference (engine's A) = MRI, second source (B) = PET" in text


# ------------------------------------------------------------------------------------ charts, montage


def read_png(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image


def test_a_chart_per_metric_and_a_montage_in_colour(main_run):
    charts = main_run["out"] / "charts"
    assert {p.stem for p in charts.glob("*.png")} == {"seconds", *METRICS}
    for path in charts.glob("*.png"):
        image = read_png(path)
        assert image.shape[0] >= 200 and image.shape[1] >= 300
        assert 5_000 < path.stat().st_size < 300_000
    montage = read_png(main_run["out"] / "montage.png")
    assert montage.shape[0] >= 3 * 256 and montage.shape[1] >= (2 + len(METHODS)) * 256  # 3 rows, 5 columns
    bgr = montage[..., :3].astype(int)
    assert np.count_nonzero(np.ptp(bgr, axis=2) > 60) > 1000  # the PET/SPECT tiles are in colour
    assert (main_run["out"] / "montage.png").stat().st_size < 2_000_000


def test_save_fused_writes_8_bit_pngs_in_colour_for_colour_pairs(main_run, harvard_dir):
    fused = main_run["out"] / "fused"
    written = sorted(p.relative_to(fused).as_posix() for p in fused.rglob("*.png"))
    expected = sorted(f"{m}/{f}/{n}" for m in METHODS for f in FOLDERS
                      for n in first_names(harvard_dir / f / "MRI", 2))
    assert written == expected
    for path in fused.rglob("*.png"):
        image = read_png(path)
        assert image.dtype == np.uint8 and image.shape[:2] == (256, 256)
        if "CT-MRI" in path.parts:
            assert image.ndim == 2
        else:
            assert image.ndim == 3 and image.shape[2] == 3 and np.ptp(image.astype(int), axis=2).max() > 50
    # The CT-MRI average is (CT + MRI) / 2 in 8 bits: the files hold the engine's fusion, A and B as named.
    name = first_names(harvard_dir / "CT-MRI" / "CT", 1)[0]
    ct, mri = harvard_pair("CT-MRI", name)
    saved = read_png(fused / "average" / "CT-MRI" / name).astype(float) / 255.0
    assert np.abs(saved - 0.5 * (ct + mri)).max() <= 0.5 / 255 + 1e-6


# ----------------------------------------------------------------------------------- selecting pairs


def test_case_and_folder_filters(harvard_dir, tmp_path):
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(["evaluate", harvard_dir, "--methods", "average", "--metrics", "EN,cc",
                                    "--folders", "SPECT-MRI,CT-MRI", "--cases", "28", "--every", 5, "--limit", 2,
                                    "--out", out, "-q"])
    assert code == 0, stderr
    rows = read_csv(out / "results.csv")
    assert list(rows[0]) == ["pair", "image", "method", "seconds", "EN", "CC"]
    for folder in ("CT-MRI", "SPECT-MRI"):
        case_28 = [n for n in sorted(p.name for p in (harvard_dir / folder / "MRI").iterdir())
                   if Path(n).stem.startswith("28") and len(Path(n).stem) == 5]
        case_28.sort(key=lambda n: int(Path(n).stem))
        assert [r["image"] for r in rows if r["pair"] == folder] == case_28[::5][:2]
    assert {r["pair"] for r in rows} == {"CT-MRI", "SPECT-MRI"}
    assert len([line for line in stdout.splitlines() if "slice(s)" in line]) == 2  # a progress line per folder


def test_split_val_uses_the_training_split(harvard_dir, tmp_path):
    """--split val scores exactly the cases the networks never trained on (MedFusionLib.data_split)."""
    from MedFusionLib.data_split import VALIDATION_CASES

    out = tmp_path / "val"
    code, _, stderr = run_cli(["evaluate", harvard_dir, "--methods", "average", "--metrics", "EN", "--split", "val",
                               "--limit", 3, "--out", out, "-q"])
    assert code == 0, stderr
    rows = read_csv(out / "results.csv")
    assert {r["pair"] for r in rows} == set(VALIDATION_CASES)
    for row in rows:
        assert case_of(row["image"]) in VALIDATION_CASES[row["pair"]], row
    code, _, stderr = run_cli(["evaluate", harvard_dir, "--split", "val", "--cases", "28", "--out", tmp_path / "x"])
    assert code == 2 and "either --cases or --split" in stderr


def test_method_variants_with_options(harvard_dir, tmp_path):
    """'name[key=value,...]' evaluates a method with options, labelled as given (canonical form)."""
    out = tmp_path / "variants"
    code, _, stderr = run_cli(["evaluate", harvard_dir, "--methods", "laplacian[levels=2], laplacian",
                               "--metrics", "SF", "--folders", "CT-MRI", "--limit", 2, "--out", out, "-q"])
    assert code == 0, stderr
    rows = read_csv(out / "results.csv")
    assert [r["method"] for r in rows[:2]] == ["laplacian[levels=2]", "laplacian"]
    by_method = {r["method"]: float(r["SF"]) for r in rows if r["image"] == rows[0]["image"]}
    assert by_method["laplacian[levels=2]"] != by_method["laplacian"]  # the option reached the method
    code, _, stderr = run_cli(["evaluate", harvard_dir, "--methods", "laplacian[depth=2]", "--out", tmp_path / "x"])
    assert code == 2 and "has no option 'depth'" in stderr


def test_pair_discovery_rules(harvard_dir):
    assert case_of("28013.png") == "28" and case_of("2004.png") == "2" and case_of("041001.png") == "41"
    assert case_of("013.png") is None and case_of("brain.png") is None
    assert sorted(["28013.png", "2004.png", "3010.png", "2010.png"], key=natural_key) == \
        ["2004.png", "2010.png", "3010.png", "28013.png"]
    folders = {f.name: f for f in discover(harvard_dir)}
    assert set(folders) == set(FOLDERS)
    # The anatomical image is the engine's reference A, whatever the folder's name order.
    assert (folders["PET-MRI"].modality_a, folders["PET-MRI"].modality_b) == ("MRI", "PET")
    assert (folders["CT-MRI"].modality_a, folders["CT-MRI"].modality_b) == ("CT", "MRI")
    assert len(folders["CT-MRI"].pairs) == 111
    # A mapping folder -> cases (e.g. a validation split) selects per folder.
    chosen = select(list(folders.values()), cases={"CT-MRI": {"41"}, "PET-MRI": {"41"}})
    assert [f.name for f in chosen] == ["CT-MRI", "PET-MRI"]
    assert all(p.case == "41" for f in chosen for p in f.pairs)


def test_unpaired_files_are_skipped_with_a_warning(harvard_dir, tmp_path):
    root = tmp_path / "pairs" / "CT-MRI"
    (root / "CT").mkdir(parents=True)
    (root / "MRI").mkdir()
    for name in ("2004.png", "2005.png"):
        shutil.copy(harvard_dir / "CT-MRI" / "CT" / name, root / "CT" / name)
    shutil.copy(harvard_dir / "CT-MRI" / "MRI" / "2004.png", root / "MRI" / "2004.png")
    shutil.copy(harvard_dir / "CT-MRI" / "MRI" / "2006.png", root / "MRI" / "2006.png")
    code, stdout, stderr = run_cli(["evaluate", tmp_path / "pairs", "--methods", "max", "--metrics", "SD",
                                    "--out", tmp_path / "out", "-q"])
    assert code == 0, stderr
    assert "medfusion: warning: CT-MRI: 2 image(s) without a partner" in stderr
    assert "CT/2005.png" in stderr and "MRI/2006.png" in stderr
    assert [(r["pair"], r["image"]) for r in read_csv(tmp_path / "out" / "results.csv")] == [("CT-MRI", "2004.png")]
    assert "without a partner" in (tmp_path / "out" / "results.md").read_text()


# ------------------------------------------------------------------------------------------- volumes


def test_volumes_mode_scores_slices_against_the_normalised_sources(stroke_dir, tmp_path):
    from MedFusionLib.engine import fuse_volumes
    from MedFusionLib.geometry import slice_layout

    t1, t2 = stroke_dir / "T1.nii.gz", stroke_dir / "T2.nii.gz"
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(["evaluate", "--volumes", t1, t2, "--methods", "average,gff", "--axis", "coronal",
                                    "--limit", 2, "--metrics", "SSIM,CC", "--out", out, "--save-fused", "-q"])
    assert code == 0, stderr
    rows = read_csv(out / "results.csv")
    assert [(r["pair"], r["method"]) for r in rows] == [("T1-T2", "average"), ("T1-T2", "gff")] * 2
    assert rows[0]["image"] == rows[1]["image"] != rows[2]["image"] == rows[3]["image"]
    assert all(re.fullmatch(r"coronal_\d{3}", r["image"]) for r in rows)
    # Direct computation: the engine's fused volume and normalised sources, cut into coronal slices.
    a, b = sitk.ReadImage(str(t1)), sitk.ReadImage(str(t2))
    result = fuse_volumes(a, b, method="gff", axis="coronal", edges=False, return_sources=True)
    layout = slice_layout(a, "coronal")
    fused = layout.to_slices(sitk.GetArrayFromImage(result.fused))
    src_a, src_b = (layout.to_slices(sitk.GetArrayFromImage(s)) for s in result.sources)
    for row in (r for r in rows if r["method"] == "gff"):
        index = int(row["image"].split("_")[1])
        saved_8bit = np.rint(np.clip(fused[index], 0, 1) * 255) / 255  # scored as saved
        expected = evaluate_all(src_a[index], src_b[index], saved_8bit, ["SSIM", "CC"])
        assert float(row["SSIM"]) == pytest.approx(expected["SSIM"], rel=1e-6)
        assert float(row["CC"]) == pytest.approx(expected["CC"], rel=1e-6)
        saved = read_png(out / "fused" / "gff" / "T1-T2" / f"{row['image']}.png")
        assert saved.dtype == np.uint8 and saved.shape == fused[index].shape
    assert (out / "montage.png").exists() and "coronal slice(s) scored" in (out / "results.md").read_text()


def test_volumes_mode_scores_only_slices_inside_b(sts_dir, tmp_path):
    ct = sitk.ReadImage(str(sts_dir / "CT.nii.gz"))
    crop = ct[:, :, 20:30]  # B covers slices 20..29 of A only
    sitk.WriteImage(crop, str(tmp_path / "crop.nrrd"))
    code, stdout, stderr = run_cli(["evaluate", "--volumes", sts_dir / "CT.nii.gz", tmp_path / "crop.nrrd",
                                    "--methods", "average", "--metrics", "CC", "--preset-a", "ct:soft",
                                    "--preset-b", "ct:soft", "--out", tmp_path / "out", "-q"])
    assert code == 0, stderr
    rows = read_csv(tmp_path / "out" / "results.csv")
    indices = sorted(int(r["image"].split("_")[1]) for r in rows)
    assert indices and set(indices) <= set(range(20, 30))
    # Inside the crop B equals A, so the average is A itself: CC = 1 up to the fused image's 8-bit rounding.
    assert all(float(r["CC"]) == pytest.approx(1.0, abs=1e-4) for r in rows)


def test_fuse_volumes_returns_the_sources_it_fused(harvard_dir):
    from MedFusionLib.engine import fuse_volumes

    name = "25015.png"
    mri, pet = (sitk.ReadImage(str(harvard_dir / "PET-MRI" / m / name)) for m in ("MRI", "PET"))
    result = fuse_volumes(mri, pet, method="average", edges=False, return_sources=True)
    pet_y, mri_ref = harvard_pair("PET-MRI", name)
    src_a, src_b = (sitk.GetArrayFromImage(s) for s in result.sources)
    assert np.allclose(src_a, mri_ref, atol=1e-6) and np.allclose(src_b, pet_y, atol=1e-5)
    assert result.sources[0].GetOrigin() == mri.GetOrigin()
    assert fuse_volumes(mri, pet, method="average", edges=False).sources is None


# -------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("case, fragment", [
    ("missing_folder", "does not exist"),
    ("no_pairs", "No modality-pair folders"),
    ("unknown_method", "Unknown fusion method 'nope'"),
    ("unknown_metric", "Unknown metric(s) 'XYZ'"),
    ("unknown_folder", "No modality-pair folder named 'MR-PET'"),
    ("no_matching_case", "No image pairs of case(s) 999"),
    ("bad_case", "Case ids are numbers"),
    ("both_inputs", "not both and not neither"),
    ("no_input", "not both and not neither"),
])
def test_bad_inputs_exit_2_with_one_sentence_and_no_output(case, fragment, harvard_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    volume = harvard_dir / "CT-MRI" / "CT" / "2004.png"
    base = {"missing_folder": [tmp_path / "nowhere"], "no_pairs": [tmp_path / "empty"],
            "unknown_method": [harvard_dir, "--methods", "average,nope"],
            "unknown_metric": [harvard_dir, "--metrics", "SSIM,XYZ"],
            "unknown_folder": [harvard_dir, "--folders", "MR-PET"],
            "no_matching_case": [harvard_dir, "--cases", "999"],
            "bad_case": [harvard_dir, "--cases", "28,abc"],
            "both_inputs": [harvard_dir, "--volumes", volume, volume],
            "no_input": []}[case]
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(["evaluate", *base, "--out", out, "-q"])
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medfusion: error: ") and lines[0].endswith("."), stderr
    assert fragment in lines[0]
    assert not out.exists()
