"""Acceleration policy and the accuracy guard: reduced precision only where the output stays close to float32."""
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from cpu_flags import cpuinfo_flags, kernels_uncapped
from MedFusionLib import acceleration
from MedFusionLib.acceleration import GUARD_PSNR_DB, Plan, accelerate, plan_precision
from MedFusionLib.data_split import list_pairs, read_y
from MedFusionLib.engine import fuse_volumes
from MedFusionLib.errors import InputError
from MedFusionLib.methods import REGISTRY

CPU = torch.device("cpu")


def psnr(x: np.ndarray, y: np.ndarray) -> float:
    mse = float(np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


@pytest.fixture(scope="module")
def validation_crops(harvard_dir):
    """Two validation pairs per modality folder, centre 128 x 128 crops (bf16 is emulated, slow, on AVX2)."""
    crops = []
    for folder in ("CT-MRI", "PET-MRI", "SPECT-MRI"):
        pairs = list_pairs(harvard_dir, split="val", folders=[folder])
        for pair in (pairs[len(pairs) // 3], pairs[2 * len(pairs) // 3]):
            a, b = (read_y(p)[64:192, 64:192] for p in (pair.path_a, pair.path_b))
            crops.append((a, b))
    to_tensor = lambda images: torch.from_numpy(np.stack(images).astype(np.float32)[:, None])  # noqa: E731
    return to_tensor([c[0] for c in crops]), to_tensor([c[1] for c in crops])  # read_y gives [0, 1]


def test_auto_detects_native_bf16_like_the_kernel_does():
    flags = cpuinfo_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo to cross-check against")
    # Native in hardware, and not capped by the environment (test_doctor.py runs the capped cases).
    native = bool({"amx_bf16", "avx512_bf16"} & flags) and kernels_uncapped()
    assert acceleration.cpu_has_native_bf16() == native
    plan = plan_precision("auto", CPU, "network", ("bf16", "fp16"))
    assert plan.precision == ("bf16" if native else "fp32")
    if not native:
        assert "bf16" in plan.reason and ("no native" in plan.reason or "capped" in plan.reason)


def test_amx_is_detected_like_the_kernel_uses_it(monkeypatch):
    flags = cpuinfo_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo to cross-check against")
    assert acceleration.cpu_has_amx_bf16() == ("amx_bf16" in flags and kernels_uncapped())
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")  # oneDNN read it at start-up; the policy reads it
    assert not acceleration.cpu_has_amx_bf16()  # bf16 may stay native, but not on AMX tiles


def test_policy_rules():
    assert plan_precision("auto", CPU, "classic", ("bf16",)).precision == "fp32"
    assert plan_precision("bf16", CPU, "classic").precision == "fp32"  # classic methods never autocast
    assert plan_precision("fp16", CPU, "network").precision == "fp16"  # forced: honoured
    cuda = torch.device("cuda")
    assert plan_precision("auto", cuda, "network", ("fp16",)).precision == "fp16"
    assert plan_precision("auto", cuda, "network", ()).precision == "fp32"  # outside the guard: float32
    with pytest.raises(InputError, match="Unknown precision 'fp8'"):
        plan_precision("fp8", CPU, "network")


GUARDED = [(info.name, precision) for info in REGISTRY.infos() for precision in info.reduced_precision]


def test_every_network_declares_its_guarded_precisions():
    networks = [info.name for info in REGISTRY.infos() if info.kind == "network"]
    assert networks and {name for name, _ in GUARDED} == set(networks)


@pytest.mark.parametrize("method,precision", GUARDED)
def test_reduced_precision_stays_within_the_guard_on_real_pairs(method, precision, validation_crops):
    a, b = validation_crops
    info = REGISTRY.get(method)
    reference = accelerate(info.build(CPU), Plan("fp32", "test"), CPU)(a, b).numpy()
    reduced = accelerate(info.build(CPU), Plan(precision, "test"), CPU)(a, b)
    assert reduced.dtype == torch.float32 and reduced.is_contiguous()
    worst = min(psnr(reference[i], reduced[i].numpy()) for i in range(len(reference)))
    assert worst >= GUARD_PSNR_DB, f"{method} in {precision}: {worst:.1f} dB against float32"
    assert worst < 200  # the precision really changed the arithmetic


def test_engine_reports_and_uses_the_precision(harvard_dir):
    pair = list_pairs(harvard_dir, split="val", folders=["CT-MRI"])[5]
    a, b = (sitk.ReadImage(str(p)) for p in (pair.path_a, pair.path_b))
    fp32 = fuse_volumes(a, b, method="mfenet", device="cpu", precision="fp32", edges=False)
    fp16 = fuse_volumes(a, b, method="mfenet", device="cpu", precision="fp16", edges=False)
    classic = fuse_volumes(a, b, method="laplacian", device="cpu", precision="fp16", edges=False)
    assert (fp32.precision, fp16.precision, classic.precision) == ("fp32", "fp16", "fp32")
    assert "(fp16)" in fp16.summary() and "(fp" not in fp32.summary()
    x, y = sitk.GetArrayFromImage(fp32.fused), sitk.GetArrayFromImage(fp16.fused)
    assert GUARD_PSNR_DB <= psnr(x, y) < 200
    with pytest.raises(InputError, match="precision"):
        fuse_volumes(a, b, method="mfenet", device="cpu", precision="half")


def test_compile_failures_fall_back_to_eager(monkeypatch, validation_crops):
    a, b = validation_crops
    eager = accelerate(REGISTRY.get("mfenet").build(CPU), Plan("fp32", "test"), CPU)(a[:2], b[:2])

    def compile_raises(fn, **kwargs):
        raise RuntimeError("no compiler here")

    def compile_breaks_on_call(fn, **kwargs):
        def broken(*args):
            raise RuntimeError("inductor failed")
        return broken

    for fake in (compile_raises, compile_breaks_on_call):
        monkeypatch.setattr(torch, "compile", fake)
        run = accelerate(REGISTRY.get("mfenet").build(CPU), Plan("fp32", "test"), CPU, compile=True)
        assert torch.equal(run(a[:2], b[:2]), eager)
        assert torch.equal(run(a[:2], b[:2]), eager)  # and keeps working after the fallback
