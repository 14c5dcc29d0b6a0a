"""How networks run on the CPU (issue 19): one 256 x 256 slice's worth of pixels a call, freed memory kept in the
heap during a fusion and glibc's defaults back afterwards, MFEnet's max rule as an element-wise maximum; each gives
the same output as before."""
from __future__ import annotations

import ctypes

import numpy as np
import pytest
import torch

from MedFusionLib import acceleration, heap
from MedFusionLib.acceleration import slices_per_call
from MedFusionLib.data_split import list_pairs, read_y
from MedFusionLib.methods import REGISTRY, mfenet

CPU = torch.device("cpu")
NETWORKS = [info.name for info in REGISTRY.infos() if info.kind == "network"]


@pytest.fixture(scope="module")
def real_slices(harvard_dir):
    """Five 96 x 112 crops of validation pairs from every modality folder (different content per slice)."""
    a, b = [], []
    for folder in ("CT-MRI", "PET-MRI", "SPECT-MRI"):
        for pair in list_pairs(harvard_dir, split="val", folders=[folder])[2:4]:
            a.append(read_y(pair.path_a)[80:176, 72:184])
            b.append(read_y(pair.path_b)[80:176, 72:184])
    as_tensor = lambda images: torch.from_numpy(np.stack(images[:5]).astype(np.float32)[:, None])  # noqa: E731
    return as_tensor(a), as_tensor(b)


def test_slices_per_call_follows_the_pixel_budget_on_the_cpu_only():
    assert acceleration.CPU_PIXELS_PER_CALL == 256 * 256
    assert slices_per_call(CPU, (8, 1, 256, 256)) == 1
    assert slices_per_call(CPU, (140, 1, 160, 124)) == 3
    assert slices_per_call(CPU, (4, 1, 512, 512)) == 1  # never below one slice
    assert slices_per_call(torch.device("cuda"), (32, 1, 512, 512)) == 32


HARD_LATENT_CHOICE = {"fusioncinn"}  # fuses latents by a per-element max-abs choice (fusioncinn.absmax)


@pytest.mark.parametrize("name", NETWORKS)
def test_networks_fuse_the_same_slices_in_chunks(name, real_slices, monkeypatch):
    a, b = real_slices
    method = REGISTRY.get(name).load(CPU, {}, "fp32")
    whole = method(a, b)  # 96 x 112 slices: all five in one call
    monkeypatch.setattr(acceleration, "CPU_PIXELS_PER_CALL", 2 * 96 * 112)  # calls of 2, 2 and 1 slices
    chunked = method(a, b)
    singles = torch.cat([method(a[i:i + 1], b[i:i + 1]) for i in range(len(a))])
    assert chunked.shape == whole.shape == (5, 1, 96, 112)
    if name in HARD_LATENT_CHOICE:
        # |u| >= |v| picks between two latents that are equal in the empty background; oneDNN computes a call of
        # one slice with other kernels than a call of two on some CPUs (AVX-512 AMD), so a few ties flip and the
        # inverse spreads each flip over its receptive field: close on average, not to 2e-6 everywhere.
        for other in (whole, singles):
            difference = (chunked - other).abs()
            assert float(difference.mean()) < 2e-4 and float(difference.max()) < 0.02
    else:
        assert torch.allclose(chunked, whole, atol=2e-6) and torch.allclose(chunked, singles, atol=2e-6)
    assert float((whole[0] - whole[1]).abs().mean()) > 0.02  # different slices: a mix-up would show


def test_mfenet_max_rule_is_the_max_abs_rule_exactly(real_slices):
    a, b = real_slices
    model = mfenet.load_model(CPU)
    with torch.inference_mode():
        fa, fb = model.encoder(a), model.encoder(b)
        written = model.decoder(mfenet.fuse_features(fa, fb, "max")).clamp(0.0, 1.0)  # the paper's |f| rule
        assert float(torch.minimum(fa, fb).min()) >= 0.0  # why the shortcut holds: the encoder ends in a ReLU
        assert torch.equal(model.fuse_features(a, b, "max"), written)


def _mmapped_blocks() -> int:
    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                          "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    return int(libc.mallinfo2().hblks)


def test_reused_heap_takes_big_blocks_from_the_heap_and_restores_glibc():
    if not heap.available():
        pytest.skip("not glibc: the heap setting does nothing here")
    try:
        _mmapped_blocks()
    except AttributeError:
        pytest.skip("glibc older than 2.33 (no mallinfo2) cannot report mmapped blocks")
    size = 64 * 2 ** 20  # above glibc's largest mmap threshold (32 MB)
    before = _mmapped_blocks()
    outside = np.ones(size, np.uint8)
    assert _mmapped_blocks() == before + 1  # glibc's default: a block this big is an mmap of its own
    del outside
    with heap.reused_heap(), heap.reused_heap():  # nested uses share the setting
        inside = np.ones(size, np.uint8)
        assert _mmapped_blocks() == before  # from the heap
        del inside
        again = np.ones(size, np.uint8)  # the freed memory is reused
        assert _mmapped_blocks() == before
        del again
    after = np.ones(size, np.uint8)
    assert _mmapped_blocks() == before + 1  # glibc's mmap use is back
    del after
