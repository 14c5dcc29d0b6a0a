"""MFEnet's int8 encoder (int8_encoder.py): chosen by auto on the CPU, refused where it does not exist."""
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from MedFusionLib.acceleration import GUARD_PSNR_DB, cpu_has_native_bf16, plan_precision
from MedFusionLib.data_split import list_pairs
from MedFusionLib.engine import fuse_volumes
from MedFusionLib.errors import InputError
from MedFusionLib.int8_encoder import quantise_in_place
from MedFusionLib.methods import REGISTRY
from MedFusionLib.methods.edpsn import load_model as load_edpsn

CPU = torch.device("cpu")


def test_auto_picks_int8_for_mfenet_without_native_bf16_and_never_on_cuda():
    mfenet = REGISTRY.get("mfenet").reduced_precision
    assert plan_precision("auto", CPU, "network", mfenet).precision == ("bf16" if cpu_has_native_bf16() else "int8")
    assert plan_precision("auto", torch.device("cuda"), "network", mfenet).precision == "fp16"
    with pytest.raises(InputError, match="int8 exists for MFEnet on the CPU only"):
        plan_precision("int8", torch.device("cuda"), "network", mfenet)
    with pytest.raises(InputError, match="int8 exists for MFEnet on the CPU only"):
        plan_precision("int8", CPU, "network", REGISTRY.get("edpsn").reduced_precision)


def test_only_mfenet_has_an_int8_encoder():
    with pytest.raises(TypeError, match="MFEnet"):
        quantise_in_place(load_edpsn("cpu"))


def test_the_engine_runs_mfenet_in_int8_within_the_guard(harvard_dir):
    pair = list_pairs(harvard_dir, split="val", folders=["CT-MRI"])[3]
    a, b = (sitk.ReadImage(str(p)) for p in (pair.path_a, pair.path_b))
    fp32 = fuse_volumes(a, b, method="mfenet", device="cpu", precision="fp32", edges=False)
    auto = fuse_volumes(a, b, method="mfenet", device="cpu", precision="int8", edges=False)
    assert auto.precision == "int8" and "(int8)" in auto.summary()
    x, y = (sitk.GetArrayFromImage(r.fused).astype(np.float64) for r in (fp32, auto))
    psnr = 10 * np.log10(1.0 / np.mean((x - y) ** 2))
    assert GUARD_PSNR_DB <= psnr < 200
