"""MFEnet in int8 (int8_encoder.py, int8_decoder.py): chosen by auto on the CPU, refused where it does not exist,
its shipped calibration ranges what calibration gives, within the guard on every CT-MRI validation pair."""
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from MedFusionLib.acceleration import GUARD_PSNR_DB, cpu_has_amx_bf16, cpu_has_native_bf16, plan_precision
from MedFusionLib.data_split import list_pairs, read_y
from MedFusionLib.engine import fuse_volumes
from MedFusionLib.errors import InputError
from MedFusionLib import int8_decoder, int8_encoder
from MedFusionLib.int8_encoder import quantise_in_place
from MedFusionLib.methods import REGISTRY
from MedFusionLib.methods.edpsn import load_model as load_edpsn
from MedFusionLib.methods.mfenet import load_model as load_mfenet

CPU = torch.device("cpu")


def test_auto_picks_int8_for_mfenet_on_every_cpu_but_amx_and_never_on_cuda():
    mfenet = REGISTRY.get("mfenet").reduced_precision
    plan = plan_precision("auto", CPU, "network", mfenet)
    if cpu_has_amx_bf16():  # AMX tiles: bf16 measured faster than the int8 encoder (README "Performance")
        assert plan.precision == "bf16" and "AMX" in plan.reason
    else:  # faster than bf16 too where bf16 is native without AMX
        assert plan.precision == "int8"
        assert ("measured faster than native bf16" in plan.reason) == cpu_has_native_bf16()
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


def test_shipped_ranges_are_the_calibrated_ones_and_spare_the_calibration(harvard_dir):
    encoder = load_mfenet("cpu").encoder
    shipped = int8_encoder.shipped_ranges(encoder)
    assert shipped is not None, "weights changed: run int8_encoder.write_shipped_ranges(load_model().encoder)"
    calibrated = int8_encoder.calibrated_ranges(encoder)
    assert set(shipped) == set(calibrated) and len(shipped) >= 6  # one per quantised activation
    for name, (low, high) in calibrated.items():
        assert shipped[name] == pytest.approx([low, high], rel=1e-4, abs=1e-6), name  # conv rounding per ISA
    # Quantised with the shipped ranges (no calibration run) = quantised with fresh ones, on a real slice.
    pair = list_pairs(harvard_dir, split="val", folders=["PET-MRI"])[2]
    x = torch.from_numpy(read_y(pair.path_a).astype(np.float32))[None, None]  # the PET slice's luma, [0, 1]
    with torch.no_grad():
        quick, fresh = int8_encoder.quantise_encoder(encoder)(x), int8_encoder.quantise_encoder(encoder, calibrated)(x)
    assert torch.allclose(quick, fresh, atol=0.05 * float(fresh.abs().max()))  # at most a quantisation step apart
    # Ranges for other weights are not used: those weights are calibrated at run time.
    other = load_mfenet("cpu").encoder
    with torch.no_grad():
        other.c1.weight.mul_(1.01)
    assert int8_encoder.shipped_ranges(other) is None


def test_shipped_decoder_ranges_are_the_calibrated_ones_and_belong_to_the_weights(harvard_dir):
    model = load_mfenet("cpu")
    shipped = int8_decoder.shipped_ranges(model.encoder, model.decoder)
    assert shipped is not None, ("weights changed: run int8_decoder.write_shipped_ranges(model.encoder, "
                                 "model.decoder) with the shared data present")
    calibrated = int8_decoder.calibrated_ranges(model.decoder, int8_encoder.quantise_encoder(model.encoder),
                                                harvard_dir)
    assert set(shipped) == set(calibrated) and len(shipped) == 4  # the input and C7-C9's outputs
    for name, (low, high) in calibrated.items():
        # int8 rounding differs a little between ISAs (VNNI or not): the encoder's features, then these ranges
        assert shipped[name] == pytest.approx([low, high], rel=0.01, abs=1e-6), name
    # Other weights keep their decoder in float32 (nothing is calibrated at run time: no training data there).
    with torch.no_grad():
        model.decoder.c8.weight.mul_(1.01)
    assert int8_decoder.shipped_ranges(model.encoder, model.decoder) is None
    quantise_in_place(model)
    assert model.encoder_is_int8 and not model.decoder_is_int8
    assert isinstance(model.decoder.c7, torch.nn.Conv2d)


def test_int8_stays_within_the_guard_on_every_ct_mri_validation_pair(harvard_dir):
    """CT-MRI is the folder where int8 comes closest to the guard (46.1 dB at worst measured, PET and SPECT 48)."""
    pairs = list_pairs(harvard_dir, split="val", folders=["CT-MRI"])
    a, b = (torch.from_numpy(np.stack([read_y(getattr(p, side)) for p in pairs]).astype(np.float32)[:, None])
            for side in ("path_a", "path_b"))
    info = REGISTRY.get("mfenet")
    fp32, int8 = info.load(CPU, {}, "fp32"), info.load(CPU, {}, "int8")
    assert int8.precision == "int8" and int8.model.decoder_is_int8
    with torch.inference_mode():
        x = torch.cat([fp32(a[i:i + 4], b[i:i + 4]) for i in range(0, len(pairs), 4)]).numpy().astype(np.float64)
        y = torch.cat([int8(a[i:i + 4], b[i:i + 4]) for i in range(0, len(pairs), 4)]).numpy().astype(np.float64)
    worst = min(10 * np.log10(1.0 / np.mean((x[i] - y[i]) ** 2)) for i in range(len(pairs)))
    assert len(pairs) >= 20 and GUARD_PSNR_DB <= worst < 200
