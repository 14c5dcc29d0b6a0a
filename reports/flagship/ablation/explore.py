"""Hand rules scored in the CDDFuse protocol on every 4th validation pair (the design study of MedFusion-Net).

As run (reports/flagship/README.md quotes its output):
    CDDFUSE_SCORER=<MedFusion folder with MedFusionLib/metrics/cddfuse.py> python explore.py 4
    ... python explore.py 4 max                  # max, then every rule of the second group
    ... python explore.py 4 max "soft t0.05"     # max, soft t0.05, then every rule of the third group
"""
import sys
import torch
import torch.nn.functional as F
from validation import Validation
from MedFusionLib.methods.laplacian import laplacian_pyramid, collapse
every = int(sys.argv[1]) if len(sys.argv) > 1 else 4
validation = Validation(every)
A, B, score = validation.A, validation.B, validation.score

def absmax(u, v): return torch.where(u.abs() >= v.abs(), u, v)
def blur(x, s):
    r = int(3 * s); k = torch.exp(-torch.arange(-r, r + 1.) ** 2 / (2 * s * s)); k = k / k.sum()
    x = F.pad(x, (r, r, r, r), mode="reflect")
    return F.conv2d(F.conv2d(x, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))
def lap_all_absmax(a, b, L=4):
    return collapse([absmax(u, v) for u, v in zip(laplacian_pyramid(a, L), laplacian_pyramid(b, L))])
def bd(a, b, s=2.0, k=1.0, base="max"):
    ba, bb = blur(a, s), blur(b, s)
    bf = torch.maximum(ba, bb) if base == "max" else 0.5 * (ba + bb)
    return bf + k * absmax(a - ba, b - bb)
variants = {
  "max": lambda a, b: torch.maximum(a, b),
  "lap4": lambda a, b: lap_all_absmax(a, b),
  "bd s2 k1": lambda a, b: bd(a, b, 2, 1),
  "bd s2 k1.5": lambda a, b: bd(a, b, 2, 1.5),
  "bd s2 k2": lambda a, b: bd(a, b, 2, 2),
  "bd s4 k1.5": lambda a, b: bd(a, b, 4, 1.5),
  "bd s1 k2": lambda a, b: bd(a, b, 1, 2),
}
sel = sys.argv[2].split(";") if len(sys.argv) > 2 else list(variants)
for n in sel:
    score(n, variants[n](A, B))
def usm(a, b, s=1.0, k=0.5):
    m = torch.maximum(a, b); return m + k * (m - blur(m, s))
def softmax_w(a, b, t=0.05):
    w = torch.sigmoid((a - b) / t); return w * a + (1 - w) * b
def hidden(a, b, s=2.0, k=0.5):
    m = torch.maximum(a, b); ba, bb = blur(a, s), blur(b, s)
    da, db = a - ba, b - bb
    lo = torch.where(a >= b, db, da)  # detail of the source that max drops
    return m + k * lo
def gain(a, b, g=1.15):
    return torch.maximum(a, b) * g
variants2 = {
  "usm s1 k0.3": lambda a, b: usm(a, b, 1, 0.3),
  "usm s1 k0.6": lambda a, b: usm(a, b, 1, 0.6),
  "usm s2 k0.3": lambda a, b: usm(a, b, 2, 0.3),
  "soft t0.05": lambda a, b: softmax_w(a, b, 0.05),
  "soft t0.02": lambda a, b: softmax_w(a, b, 0.02),
  "hidden s2 k0.5": lambda a, b: hidden(a, b, 2, 0.5),
  "hidden s2 k1": lambda a, b: hidden(a, b, 2, 1.0),
  "gain1.15": lambda a, b: gain(a, b, 1.15),
}
for n in (sys.argv[3].split(";") if len(sys.argv) > 3 else list(variants2)):
    score(n, variants2[n](A, B))
def gradmag(x):
    kx = torch.tensor([[-1., 0, 1], [-2, 0, 2], [-1, 0, 1]]).view(1, 1, 3, 3) / 8
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return torch.sqrt(F.conv2d(xp, kx) ** 2 + F.conv2d(xp, kx.transpose(2, 3)) ** 2 + 1e-12)
def sal(a, b, lam=1.0, t=0.05, s=1.0, g=1.0):
    sa = a + lam * blur(gradmag(a), s); sb = b + lam * blur(gradmag(b), s)
    w = torch.sigmoid((sa - sb) / t); return g * (w * a + (1 - w) * b)
variants3 = {
  "sal l1 t.05": lambda a, b: sal(a, b, 1, 0.05),
  "sal l3 t.05": lambda a, b: sal(a, b, 3, 0.05),
  "sal l3 t.02 s2": lambda a, b: sal(a, b, 3, 0.02, 2),
  "sal l8 t.05 s2": lambda a, b: sal(a, b, 8, 0.05, 2),
  "soft t.05 g1.1": lambda a, b: softmax_w(a, b, 0.05) * 1.1,
  "soft t.1": lambda a, b: softmax_w(a, b, 0.1),
}
for n in (sys.argv[4].split(";") if len(sys.argv) > 4 else list(variants3)):
    score(n, variants3[n](A, B))
