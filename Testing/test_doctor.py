"""`medfusion --version` and `medfusion doctor`: real versions, the precision `auto` really picks (also under an
ISA cap set in the environment, in a subprocess), and the weights checks on intact, corrupted and missing files."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from cpu_flags import cpuinfo_flags
from MedFusionLib import __version__, doctor
from MedFusionLib.acceleration import plan_precision
from MedFusionLib.cli import main
from MedFusionLib.methods import REGISTRY
from MedFusionLib.weights_store import WEIGHTS_DIR, read_manifest

NETWORKS = [info for info in REGISTRY.infos() if info.kind == "network"]
ISA_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")


def _cpuinfo_has_native_bf16() -> bool:
    return bool({"amx_bf16", "avx512_bf16"} & cpuinfo_flags())


def _doctor_in_subprocess(**isa_env) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ISA_VARIABLES}
    env.update(isa_env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(doctor.__file__).parents[1]), env.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, "-m", "MedFusionLib", "doctor"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_version_names_medfusion_python_and_the_libraries(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"medfusion {__version__} (Python ")
    assert f"torch {torch.__version__}" in line and f"numpy {np.__version__}" in line
    assert f"SimpleITK {sitk.Version_VersionString()}" in line
    assert f"OpenCV {cv2.__version__}" in line  # the distribution's version starts with cv2's, e.g. 5.0.0.93


def test_doctor_reports_what_really_runs(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for text in (f"torch {torch.__version__}", f"SimpleITK {sitk.Version_VersionString()}", f"OpenCV {cv2.__version__}",
                 f"numpy {np.__version__}", doctor.cpu_model(), "all checks passed"):
        assert text in out
    assert f"ATen {torch.backends.cpu.get_cpu_capability()}" in out
    assert ("CUDA: this torch build has no CUDA" in out) == (torch.version.cuda is None)
    for info in NETWORKS:  # the plan the engine itself builds for this network on the CPU
        plan = plan_precision("auto", torch.device("cpu"), "network", info.reduced_precision)
        assert f"precision auto, {info.name} on cpu: {plan.precision} ({plan.reason})" in out
    for entry in read_manifest()["entries"]:
        assert f"{entry['file']}" in out and f"ok (sha256 {entry['sha256'][:12]}" in out


@pytest.mark.parametrize("variable, value, capped_at", [("ATEN_CPU_CAPABILITY", "avx2", "AVX2 (ATEN_CPU_CAPABILITY)"),
                                                        ("ONEDNN_MAX_CPU_ISA", "AVX2", "AVX2 (ONEDNN_MAX_CPU_ISA)")])
def test_an_isa_cap_in_the_environment_turns_auto_to_fp32(variable, value, capped_at):
    """bf16 is capped away; int8 (oneDNN's int8 kernels run on AVX2 too) takes its place where a network offers it."""
    out = _doctor_in_subprocess(**{variable: value})
    for info in NETWORKS:
        line = next(l for l in out.splitlines() if l.startswith(f"precision auto, {info.name} on cpu:"))
        if "int8" in info.reduced_precision:
            assert line.startswith(f"precision auto, {info.name} on cpu: int8 (")
            continue
        assert line.startswith(f"precision auto, {info.name} on cpu: fp32 (")
        if _cpuinfo_has_native_bf16():  # the hardware could, the cap forbids it, and the doctor says which
            assert f"capped at {capped_at}" in line
    if variable == "ATEN_CPU_CAPABILITY":
        assert "ATen AVX2 (ATEN_CPU_CAPABILITY=avx2)" in out


def test_without_a_cap_auto_follows_the_hardware():
    out = _doctor_in_subprocess()
    expected = "bf16" if _cpuinfo_has_native_bf16() else "fp32"
    guarded = [info for info in NETWORKS if "bf16" in info.reduced_precision and "int8" not in info.reduced_precision]
    assert guarded, "no network passes the bf16 accuracy guard: nothing to check"
    for info in guarded:
        assert f"precision auto, {info.name} on cpu: {expected} (" in out
    for info in NETWORKS:  # int8 wherever a network offers it, except that AMX runs bf16 faster
        if "int8" in info.reduced_precision:
            wanted = "bf16" if "amx_bf16" in cpuinfo_flags() else "int8"
            assert f"precision auto, {info.name} on cpu: {wanted} (" in out


def test_a_cap_below_amx_gives_int8_back_to_mfenet():
    """oneDNN capped at AVX-512 BF16 (no AMX tiles): bf16 stays native but the int8 encoder is the faster one."""
    out = _doctor_in_subprocess(ONEDNN_MAX_CPU_ISA="AVX512_CORE_BF16")
    for info in NETWORKS:
        line = next(l for l in out.splitlines() if l.startswith(f"precision auto, {info.name} on cpu:"))
        if "int8" in info.reduced_precision:
            assert line.startswith(f"precision auto, {info.name} on cpu: int8 (")
        elif "bf16" in info.reduced_precision:
            assert line.startswith(f"precision auto, {info.name} on cpu: "
                                   f"{'bf16' if _cpuinfo_has_native_bf16() else 'fp32'} (")


def test_doctor_finds_corrupted_and_missing_weights(tmp_path):
    weights = tmp_path / "weights"
    shutil.copytree(WEIGHTS_DIR, weights)
    entries = read_manifest(weights)["entries"]
    corrupted, missing = entries[0], entries[1]
    data = bytearray((weights / corrupted["file"]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (weights / corrupted["file"]).write_bytes(bytes(data))
    (weights / missing["file"]).unlink()
    lines = []
    assert doctor.run(say=lines.append, weights_dir=weights) == 1
    text = "\n".join(lines)
    assert f"{corrupted['file']}" in text and "CORRUPTED (sha256 differs from the manifest)" in text
    assert next(l for l in lines if f" {missing['file']} " in l).endswith("MISSING")
    assert "PROBLEMS found" in lines[-1]
    assert (WEIGHTS_DIR / corrupted["file"]).is_file()  # the shipped files were not touched
