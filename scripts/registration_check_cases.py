#!/usr/bin/env python3
"""The registration check's figures of the README and of registration_check.py's docstring: every case below
on the shared volumes, with the estimate, the mutual-information gain over zero shift, the decision and the time.

Cases: stroke T1 vs T2 (one grid), T2 and T1 moved by known shifts; sts_001 CT vs MR (about 12 mm apart, the data
README); CT vs its own PET (one PET/CT frame), whole and cropped, and with known shifts applied to the PET; MR
crops vs PET.

    nice -n 19 .venv/bin/python scripts/registration_check_cases.py [CASE ...]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "MedFusion"))


def _cases(volumes: Path) -> dict:
    import numpy as np
    import SimpleITK as sitk

    def read(name):
        return sitk.ReadImage(str(volumes / f"{name}.nii.gz"))

    def moved(image, shift):
        copy = sitk.Image(image)  # a copy: the original keeps its origin
        copy.SetOrigin(tuple(np.add(image.GetOrigin(), shift)))
        return copy

    t1, t2 = read("stroke_T1_T2_FLAIR/T1"), read("stroke_T1_T2_FLAIR/T2")
    ct, pet, mr = read("sts_001/CT"), read("sts_001/PET"), read("sts_001/MR_T1")
    six, block = (slice(None), slice(None), slice(24, 30)), (slice(0, 120), slice(40, 160), slice(20, 32))
    return {
        "T1 vs T2": lambda: (t1, t2),
        "T1 vs T2 moved (3,-4,3.5)": lambda: (t1, moved(t2, (3.0, -4.0, 3.5))),
        "T1 vs T2 moved (0,3,0)": lambda: (t1, moved(t2, (0.0, 3.0, 0.0))),
        "T1 vs T1 moved (0,0,6)": lambda: (t1, moved(t1, (0.0, 0.0, 6.0))),
        "CT vs MR": lambda: (ct, mr),
        "CT[:,:,24:30] vs MR": lambda: (ct[six], mr),
        "CT[0:120,40:160,20:32] vs MR": lambda: (ct[block], mr),
        "CT vs PET": lambda: (ct, pet),
        "CT[:,:,24:30] vs PET": lambda: (ct[six], pet),
        "CT[0:120,40:160,20:32] vs PET": lambda: (ct[block], pet),
        "PET vs CT": lambda: (pet, ct),
        "CT vs PET moved (6,0,0)": lambda: (ct, moved(pet, (6.0, 0.0, 0.0))),
        "CT vs PET moved (0,10,0)": lambda: (ct, moved(pet, (0.0, 10.0, 0.0))),
        "MR vs PET": lambda: (mr, pet),
        "MR[:,:,24:30] vs PET": lambda: (mr[six], pet),
        "MR[20:150,20:140,20:40] vs PET": lambda: (mr[20:150, 20:140, 20:40], pet),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", help="case names as listed (default: all)")
    parser.add_argument("--volumes", type=Path, default=REPO.parent / "shared" / "data" / "volumes")
    args = parser.parse_args(argv)
    import numpy as np
    from MedFusionLib.registration_check import check_registration

    cases = _cases(args.volumes)
    for name in args.cases or cases:
        a, b = cases[name]()
        started = time.perf_counter()
        found = check_registration(a, b)
        seconds = time.perf_counter() - started
        estimate = "cannot tell" if found.reported_mm is None else f"{found.reported_mm:5.1f} mm"
        raw = "" if not np.all(np.isfinite(found.translation_mm)) else \
            f" (estimate {np.linalg.norm(found.translation_mm):.1f} mm " \
            f"{np.round(found.translation_mm, 1).tolist()}, gain {found.gain:+.0%})"
        raw += f": {found.cannot_tell}" if found.cannot_tell else ""
        unsearched = "".join(axis for axis, s in zip("ijk", found.searched_axes) if not s)  # A's voxel axes
        print(f"{name:32s} {estimate:12s} {'WARNS' if found.misaligned else 'silent':6s} {seconds:4.1f} s"
              f"{raw}{'  not searched: ' + unsearched if unsearched else ''}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
