"""The method contract (methods/base.py), asserted for every registered method on real Harvard pairs.

One parameterized test per clause, in the style of MONAI's network tests: a new method is covered by adding its
registry entry. Method-specific behaviour (quality against averaging, a network's modules, its options'
effects) stays in the method's own test file.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from MedFusionLib import data_split
from MedFusionLib.acceleration import PRECISIONS
from MedFusionLib.errors import InputError
from MedFusionLib.methods import REGISTRY
from MedFusionLib.methods.base import FusionMethod
from MedFusionLib.methods.registry import parse_method_spec

METHODS = REGISTRY.names()
CPU = torch.device("cpu")
# One held-out pair of every folder (colour PET/SPECT reduced to their luma Y), cropped to keep this fast.
PAIRS = ("CT-MRI/41010.png", "PET-MRI/41042.png", "SPECT-MRI/29014.png")
CROP = (slice(64, 192), slice(60, 188))


@pytest.fixture(scope="module")
def batch(harvard_dir):
    pairs = {p.key: p for p in data_split.list_pairs(harvard_dir, "all")}
    a = np.stack([data_split.read_y(pairs[name].path_a)[CROP] for name in PAIRS])[:, None]
    b = np.stack([data_split.read_y(pairs[name].path_b)[CROP] for name in PAIRS])[:, None]
    return torch.from_numpy(a.astype(np.float32)), torch.from_numpy(b.astype(np.float32))


@pytest.fixture(scope="module")
def loaded():
    """Each method loaded once, as the engine loads it (so the module's tests share the network weights)."""
    return {name: REGISTRY.get(name).load(CPU) for name in METHODS}


@pytest.mark.parametrize("name", METHODS)
def test_shape_range_finite_inputs_untouched_deterministic(name, batch, loaded):
    a, b = batch
    method = loaded[name]
    assert isinstance(method, FusionMethod) and method.name == name
    a_before, b_before = a.clone(), b.clone()
    fused = method(a, b)
    assert fused.shape == a.shape and fused.dtype == torch.float32 and fused.device == CPU
    assert bool(torch.isfinite(fused).all())
    assert float(fused.min()) >= 0.0 and float(fused.max()) <= 1.0
    assert torch.equal(a, a_before) and torch.equal(b, b_before)  # inputs untouched
    assert torch.equal(fused, method(a, b))  # deterministic on the CPU
    assert not torch.equal(fused, a) and not torch.equal(fused, b)  # really fuses: neither source alone


@pytest.mark.parametrize("name", METHODS)
def test_any_slice_size_and_batching_is_only_an_optimisation(name, batch, loaded):
    a, b = batch
    method = loaded[name]
    odd = method(a[:1, :, 3:40, 5:58], b[:1, :, 3:40, 5:58])  # 37 x 53: not a multiple of anything
    assert odd.shape == (1, 1, 37, 53) and 0 <= float(odd.min()) and float(odd.max()) <= 1
    # CPU kernels may pick another algorithm for another batch size: equal to rounding, not bit for bit.
    torch.testing.assert_close(method(a[1:2], b[1:2]), method(a, b)[1:2], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", METHODS)
def test_moving_keeps_the_loaded_method(name, loaded, batch):
    a, b = batch
    method = loaded[name]
    model, before = method.model, method(a[:1], b[:1])
    assert method.to("cpu") is method and method.model is model  # moved, not rebuilt
    assert method.device == CPU and method.precision in PRECISIONS and method.precision != "auto"  # a resolved plan
    assert torch.equal(method(a[:1], b[:1]), before)
    if model is not None:
        assert not model.training  # a network is in eval mode


@pytest.mark.parametrize("name", METHODS)
def test_options_are_validated_from_their_declaration(name):
    info = REGISTRY.get(name)
    with pytest.raises(InputError, match="has no option 'no_such_option'"):
        info.check_options({"no_such_option": 1})
    assert info.check_options(info.defaults()) == info.defaults()
    for key, option in info.options.items():
        assert option.help and option.describe()
        wrong = 1.5 if isinstance(option.default, (str, int)) else "word"
        with pytest.raises(InputError, match=key):
            info.check_options({key: wrong})
        if option.minimum is not None:
            with pytest.raises(InputError, match="at least"):
                info.check_options({key: option.minimum - 1})
        if option.choices:
            assert option.default in option.choices
            with pytest.raises(InputError, match="choose one of"):
                info.check_options({key: "no-such-choice"})
        # the method spec the CLI, batch rows and evaluation read gives the declared default back
        spec = f"{name}[{key}={option.default}]"
        assert parse_method_spec(spec, REGISTRY) == (name, {key: option.default})


@pytest.mark.parametrize("name", [n for n in METHODS if REGISTRY.get(n).kind == "network"])
def test_no_convolution_copies_its_input_through_an_empty_pad(name, loaded):
    """torch pads a non-"zeros" padding mode by copying the input even when the padding is 0 (a 1 x 1): a
    full-resolution copy per call for nothing (a fifth of MedFusion-Net's time, measured)."""
    convolutions = [m for m in loaded[name].model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convolutions
    for conv in convolutions:
        if not any(conv.padding if isinstance(conv.padding, tuple) else [conv.padding]):
            assert conv.padding_mode == "zeros", conv
