#!/usr/bin/env python3
"""The field-of-view and functional-colour figures of the README (issue 13), for every registered method.

1. sts_001 CT (4 axial slices, 27-30) + MR: mean |fused - A| outside the MR's field of view, the mean step
   between voxel pairs straddling its border (fused vs A's own), and within 10 voxels inside it.
2. sts_001 CT (slices 25-28, through the tumour) + SUV PET with the hot map, in both colour modes: the share of
   voxels with PET >= 70% of its window that are bright and warm (HSV value >= 0.7 and hue red-yellow, or
   near-white), and of voxels with PET <= 10% that are untinted (HSV saturation <= 0.2).

    nice -n 19 .venv/bin/python scripts/trust_checks.py [--methods average,gff]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "MedFusion"))


def hsv(rgb_u8):
    import cv2
    import numpy as np

    out = np.stack([cv2.cvtColor(np.ascontiguousarray(s), cv2.COLOR_RGB2HSV_FULL) for s in rgb_u8]).astype(np.float32)
    return out[..., 0] * 360.0 / 256.0, out[..., 1] / 255.0, out[..., 2] / 255.0


def main(argv=None) -> int:
    import numpy as np
    import SimpleITK as sitk

    from MedFusionLib.engine import fuse_volumes
    from MedFusionLib.evaluation.seams import field_of_view_mask, seam_figures
    from MedFusionLib.methods import REGISTRY

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(REGISTRY.names()))
    parser.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    sts = Path(args.shared) / "volumes" / "sts_001"
    ct = sitk.ReadImage(str(sts / "CT.nii.gz"))
    mr, pet = sitk.ReadImage(str(sts / "MR_T1.nii.gz")), sitk.ReadImage(str(sts / "PET.nii.gz"))

    a = ct[:, :, 27:31]
    inside = field_of_view_mask(mr, a)
    print(f"Field of view: sts_001 CT slices 27-30 + MR ({100 * inside.mean():.1f}% of the CT inside); x 1/255")
    print("| method | outside: mean abs(fused - A) | border step: fused / A | within 10 voxels: fused / A / "
          "fused further in |")
    print("|---|---|---|---|")
    for method in methods:
        result = fuse_volumes(a, mr, method=method, preset_a="ct:soft", preset_b="mr", edges=False,
                              return_sources=True, device="cpu")
        f = seam_figures(sitk.GetArrayFromImage(result.fused), sitk.GetArrayFromImage(result.sources[0]), inside)
        print(f"| `{method}` | {255 * f['outside_error']:.2f} | {255 * f['border_step']:.2f} / "
              f"{255 * f['border_step_a']:.2f} | {255 * f['ring_step']:.2f} / {255 * f['ring_step_a']:.2f} / "
              f"{255 * f['interior_step']:.2f} |", flush=True)

    a = ct[:, :, 25:29]
    pet_on_a = sitk.GetArrayFromImage(sitk.Resample(pet, a, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32))
    print("\nColour: sts_001 CT slices 25-28 + SUV PET, --colormap-b hot")
    print("| method | overlay (auto): hot bright+warm / low untinted | ycbcr: hot bright+warm / low untinted |")
    print("|---|---|---|")
    for method in methods:
        cells = []
        for mode in ("overlay", "ycbcr"):
            result = fuse_volumes(a, pet, method=method, preset_a="ct:soft", preset_b="pet", colormap_b="hot",
                                  colour_mode=mode, edges=False, device="cpu")
            window = result.windows["B"]
            level = np.clip((pet_on_a - window.low) / (window.high - window.low), 0.0, 1.0)
            hue, saturation, value = hsv(sitk.GetArrayFromImage(result.fused))
            hot, low = level >= 0.7, level <= 0.1
            warm = (value >= 0.7) & ((hue <= 65.0) | (hue >= 345.0) | (saturation <= 0.2))
            cells.append(f"{100 * warm[hot].mean():.1f}% / {100 * (saturation[low] <= 0.2).mean():.1f}%")
        print(f"| `{method}` | {cells[0]} | {cells[1]} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
