#!/usr/bin/env python3
"""Draw the MedFusion icon (128x128 PNG): two overlapping discs, grey (anatomy) and amber (function),
blended where they overlap. Writes the module icon and the extension icon (top-level Resources/).

Usage: python scripts/make_icons.py   (needs numpy and opencv-python-headless; deterministic output)
"""
from pathlib import Path

import cv2
import numpy as np

SIZE = 128
SUPERSAMPLE = 8  # draw large, then shrink with area averaging: smooth edges without anti-aliasing tricks
ROOT = Path(__file__).resolve().parents[1]
TARGETS = (ROOT / "MedFusion" / "Resources" / "Icons" / "MedFusion.png", ROOT / "Resources" / "MedFusion.png")


def disc(size: int, centre, radius) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    return ((x - centre[0]) ** 2 + (y - centre[1]) ** 2 <= radius ** 2).astype(np.float32)


def draw() -> np.ndarray:
    big = SIZE * SUPERSAMPLE
    r = 0.30 * big
    left = disc(big, (0.38 * big, 0.5 * big), r)
    right = disc(big, (0.62 * big, 0.5 * big), r)
    grey = np.array([205, 205, 210], np.float32)  # RGB
    amber = np.array([255, 150, 20], np.float32)
    fused = np.array([255, 220, 150], np.float32)  # lighter: the fused region
    rgb = np.zeros((big, big, 3), np.float32)
    rgb += left[..., None] * (1 - right[..., None]) * grey
    rgb += right[..., None] * (1 - left[..., None]) * amber
    rgb += (left * right)[..., None] * fused
    alpha = np.maximum(left, right) * 255.0
    rgba = np.dstack([rgb, alpha])
    small = cv2.resize(rgba, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    # Colour was premultiplied by coverage through the masks; un-premultiply so edges keep their hue.
    coverage = np.maximum(small[..., 3:4] / 255.0, 1e-6)
    small[..., :3] = np.where(small[..., 3:4] > 0, small[..., :3] / coverage, 0)
    return np.clip(np.rint(small), 0, 255).astype(np.uint8)


def main() -> None:
    rgba = draw()
    bgra = rgba[..., [2, 1, 0, 3]]
    for path in TARGETS:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), bgra):
            raise SystemExit(f"could not write {path}")
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
