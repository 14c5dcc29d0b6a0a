"""The highest EN (CDDFuse protocol: entropy of the 8-bit grey fused image, bits) that any fusion can reach on our
validation pairs while it leaves empty what both sources leave empty (issue 14, the CT-MRI EN target).

Where both sources are 0 in the scorer's grey images, such a fusion is 0 too, so its histogram has p0 >= z, the
fraction of those pixels. The entropy is then at most h(p0) + (1 - p0) log2(255) with p0 = max(z, 1/256) (the other
255 levels equally likely), h the binary entropy: a bound no fusion of the two sources can pass, however it mixes
the foreground. The mean of the per-pair bounds bounds the mean EN the scorer reports.

As run: python reports/flagship/ablation/en_bound.py
"""
import numpy as np
from validation import Validation

for folder in ("CT-MRI", "PET-MRI", "SPECT-MRI"):
    validation = Validation(1, folders=[folder])
    empty, bounds = [], []
    for grey_a, grey_b in validation.sources:
        z = float(np.mean((np.asarray(grey_a) == 0) & (np.asarray(grey_b) == 0)))
        p0 = max(z, 1 / 256)
        binary = -(p0 * np.log2(p0) + (1 - p0) * np.log2(1 - p0)) if p0 < 1 else 0.0
        empty.append(z)
        bounds.append(binary + (1 - p0) * np.log2(255))
    print(f"{folder}: {len(empty)} pairs; empty in both sources: mean {np.mean(empty):.3f} (min {np.min(empty):.3f}); "
          f"EN bound: mean {np.mean(bounds):.3f} (highest pair {np.max(bounds):.3f})")
