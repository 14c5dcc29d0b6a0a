"""MFEnet's layers one by one on this CPU: milliseconds and multiply-adds a second per 256 x 256 slice (issue 19).

How near the CPU's arithmetic peak each float32 convolution runs, and what the int8 encoder sustains: the basis
of the README's reckoning of what the AVX2 class can reach. Each layer runs on one slice of its real input
(the shipped weights, a phantom slice), after warm-up calls; the fastest of ``--repeats`` timings counts.
Set ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 to time the AVX2 class on a newer CPU.

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python scripts/mfenet_layer_probe.py --out reports/mfenet-layers-avx2.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "MedFusion"))


def best_ms(function, argument, repeats: int) -> float:
    import torch

    with torch.inference_mode():
        for _ in range(2):
            function(argument)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            function(argument)
            times.append(time.perf_counter() - started)
    return 1000.0 * min(times)


def macs_per_pixel(conv) -> int:
    return conv.in_channels * conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]


def probe(size: int, repeats: int) -> dict:
    import torch
    import torch.nn.functional as F

    from MedFusionLib.int8_encoder import quantise_encoder
    from MedFusionLib.methods.mfenet import load_model
    from MedFusionLib.int8_encoder import calibration_slices

    model = load_model("cpu")
    slice_ = F.interpolate(calibration_slices()[:1], size=(size, size), mode="bilinear", align_corners=False)
    encoder, decoder = model.encoder, model.decoder
    with torch.inference_mode():
        shallow = F.relu(encoder.c1(slice_))
        multi = torch.cat([F.relu(encoder.c2(shallow)), F.relu(encoder.c3(shallow)), F.relu(encoder.c4(shallow))], 1)
        features = encoder(slice_)
        y7 = F.relu(decoder.c7(features))
        y8 = F.relu(decoder.c8(y7))
        y9 = F.relu(decoder.c9(y8))
    inputs = {"c1": slice_, "c2": shallow, "c3": shallow, "c4": shallow, "c5": multi, "c6": shallow,
              "c7": features, "c8": y7, "c9": y8, "c10": y9}
    pixels = size * size
    layers = {}
    for name, tensor in inputs.items():
        conv = getattr(encoder if name in ("c1", "c2", "c3", "c4", "c5", "c6") else decoder, name)
        ms = best_ms(conv, tensor, repeats)
        gmacs = macs_per_pixel(conv) * pixels / 1e9
        layers[name] = {"ms": round(ms, 2), "gmac": round(gmacs, 3), "gmac_per_s": round(gmacs / (ms / 1000), 1),
                        "dilation": conv.dilation[0], "kernel": conv.kernel_size[0]}
    encoder_macs = sum(macs_per_pixel(getattr(encoder, n)) for n in ("c1", "c2", "c3", "c4", "c5", "c6"))
    decoder_macs = sum(macs_per_pixel(getattr(decoder, n)) for n in ("c7", "c8", "c9", "c10"))
    int8 = quantise_encoder(encoder)
    whole = {}
    for name, function, argument, macs in [("encoder fp32", encoder, slice_, encoder_macs),
                                           ("encoder int8", int8, slice_, encoder_macs),
                                           ("decoder fp32", decoder, features, decoder_macs)]:
        ms = best_ms(function, argument, repeats)
        whole[name] = {"ms": round(ms, 2), "gmac_per_s": round(macs * pixels / 1e9 / (ms / 1000), 1)}
    return {"size": [size, size], "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "macs_per_pixel": {"encoder (one source)": encoder_macs, "decoder": decoder_macs,
                               "fusion (two encoders + decoder)": 2 * encoder_macs + decoder_macs},
            "layers_fp32": layers, "parts": whole}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report = probe(args.size, args.repeats)
    print(f"{report['cpu_capability']}, {report['threads']} threads, {args.size} x {args.size}")
    for name, row in report["layers_fp32"].items():
        print(f"  {name:>4} fp32 {row['ms']:7.2f} ms  {row['gmac_per_s']:6.1f} GMAC/s")
    for name, row in report["parts"].items():
        print(f"  {name}: {row['ms']:.1f} ms, {row['gmac_per_s']:.1f} GMAC/s")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
