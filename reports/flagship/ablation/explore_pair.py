"""Hand rules scored in the CDDFuse protocol on every validation pair of ONE modality pair, with the counts of
metrics above CDDFuse's published numbers and above pixel-max (the first expression should be the max).
The CT-MRI study of reports/flagship/README.md section 6 (issue 14).

As run (rules are python expressions of a, b: (N, 1, H, W) luma tensors in [0, 1]; ';'-separated):
    python explore_pair.py CT-MRI 1 "torch.maximum(a,b);soft(a,b);soft(a,b)*1.05;sal(a,b,3,0.05);gsel_hard(a,b,2)"
"""
import sys, time, torch
import torch.nn.functional as F
from validation import Validation
folder, every = sys.argv[1], int(sys.argv[2])
validation = Validation(every, folders=[folder])
A, B, score = validation.A, validation.B, validation.score
pairs = validation.pairs
print(f"{folder}: a = {pairs[0].modality_a}, b = {pairs[0].modality_b}, {len(pairs)} pairs; "
      "rule, wins over CDDFuse, over max, then EN SD SF MI SCD VIF Qabf SSIM")
def blur(x, s):
    r = int(3 * s); k = torch.exp(-torch.arange(-r, r + 1.) ** 2 / (2 * s * s)); k = k / k.sum()
    x = F.pad(x, (r, r, r, r), mode="reflect")
    return F.conv2d(F.conv2d(x, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))
def gradmag(x):
    kx = torch.tensor([[-1., 0, 1], [-2, 0, 2], [-1, 0, 1]]).view(1, 1, 3, 3) / 8
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return torch.sqrt(F.conv2d(xp, kx) ** 2 + F.conv2d(xp, kx.transpose(2, 3)) ** 2 + 1e-12)
def soft(a, b, t=0.05):
    """soft max, w = sigmoid((a - b) / t)"""
    w = torch.sigmoid((a - b) / t); return w * a + (1 - w) * b
def sal(a, b, lam=1.0, t=0.05, s=1.0):
    """soft max on intensity + lam x blurred gradient magnitude"""
    sa = a + lam * blur(gradmag(a), s); sb = b + lam * blur(gradmag(b), s)
    w = torch.sigmoid((sa - sb) / t); return w * a + (1 - w) * b
def gsel(a, b, t=0.01, s=1.0):
    """soft selection of the source with the stronger (blurred) gradient"""
    w = torch.sigmoid((blur(gradmag(a), s) - blur(gradmag(b), s)) / t); return w * a + (1 - w) * b
def gsel_hard(a, b, s=1.0):
    w = (blur(gradmag(a), s) >= blur(gradmag(b), s)).float(); return w * a + (1 - w) * b
def mix(a, b, k=0.3, s=2.0, g=1.0):
    """(1 - k) soft max + k gradient selection, times g"""
    return g * ((1 - k) * soft(a, b) + k * gsel_hard(a, b, s))
def detail_swap(a, b, s=2.0, sd=1.0, g=1.0):
    """base (blur sd) of the soft max + detail of the gradient selection, times g"""
    m, q = soft(a, b), gsel_hard(a, b, s)
    return g * (blur(m, sd) + (q - blur(q, sd)))
for rule in sys.argv[3].split(";"):
    score(rule, eval(rule, dict(globals()), {"a": A, "b": B}))
