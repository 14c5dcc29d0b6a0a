"""`medfusion evaluate` shows one overall bar across folders and methods, with elapsed and remaining time."""
from __future__ import annotations

import re

from test_evaluate import run_cli as _run  # (exit code, stdout, stderr) of `medfusion ...`

ETA = re.compile(r"\[\d\d:\d\d<\d\d:\d\d")  # tqdm's [elapsed<remaining]


def _overall_states(stderr: str):
    return [s for s in re.split(r"[\r\n]", stderr) if s.startswith("overall")]


def test_one_overall_bar_counts_every_folder_and_method(harvard_dir, tmp_path):
    code, stdout, stderr = _run(["evaluate", harvard_dir, "--methods", "average,max", "--metrics", "EN",
                                 "--limit", 2, "--out", tmp_path / "out"])
    assert code == 0, stderr
    states = _overall_states(stderr)
    total = 3 * 2 * 2  # 3 folders x 2 pairs x 2 methods
    assert states and all(f"/{total} " in s for s in states)
    assert f"100%" in states[-1] and f"{total}/{total}" in states[-1] and ETA.search(states[-1])
    # Per-folder bars still run beneath it, and the report lines reach stdout intact.
    assert "PET-MRI scoring" in stderr  # one scoring bar per folder (all methods scored together)
    assert "medfusion evaluate: SPECT-MRI    max" in stdout


def test_volumes_get_the_overall_bar_and_quiet_has_none(stroke_dir, tmp_path):
    argv = ["evaluate", "--volumes", stroke_dir / "T1.nii.gz", stroke_dir / "T2.nii.gz", "--methods", "average,max",
            "--metrics", "EN", "--limit", 3, "--out", tmp_path / "out"]
    code, _, stderr = _run(argv)
    assert code == 0, stderr
    assert "6/6" in _overall_states(stderr)[-1]  # 3 slices x 2 methods
    code, _, stderr = _run(argv + ["-q"])
    assert code == 0 and _overall_states(stderr) == []
