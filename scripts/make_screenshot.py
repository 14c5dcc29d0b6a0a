#!/usr/bin/env python3
"""The extension's screenshot (EXTENSION_SCREENSHOTURLS): the phantom's CT and MR fused by the engine, shown as
axial / coronal / sagittal slices with the edge overlay. It is rendered by MedFusionLib.preview (the same
engine the Slicer module runs), not captured from the Slicer application.

Usage: python scripts/make_screenshot.py [--method laplacian]   (after scripts/setup_venv.sh)
"""
import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "Resources" / "Screenshots" / "MedFusion-phantom.png"


def main() -> None:
    from MedFusionLib import fuse_volumes
    from MedFusionLib.phantom import make_head_phantom
    from MedFusionLib.preview import save_preview

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--method", default="laplacian")
    parser.add_argument("--scale", type=float, default=0.6)
    args = parser.parse_args()
    images = make_head_phantom(("ct", "mr"), scale=args.scale)
    result = fuse_volumes(images["ct"], images["mr"], method=args.method, preset_a="ct", preset_b="mr",
                          device="cpu", name_a="CT", name_b="MR")
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    save_preview(images["ct"], images["mr"], result, TARGET, titles=("CT", "MR"))
    print(f"wrote {TARGET.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
