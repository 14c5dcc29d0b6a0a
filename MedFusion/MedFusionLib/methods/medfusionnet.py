r"""MedFusion-Net: MedFusion's own small, fast fusion network (inference only; training in
``MedFusionTraining/medfusionnet.py``).

The fused image is a per-pixel convex mix of the two sources plus a small bounded correction:

    w = sigmoid((a - b) / T0 + h_w(a, b))          saliency weight: a soft pixel-max plus a learnt logit
    F = w a + (1 - w) b + R tanh(h_r(a, b))         R = 0.05: a bounded residual (sharpening, contrast)

h = head(local(x) ++ upsample(context(avgpool4(x)))), x = (a, b, a - b, |Sobel a|, |Sobel b|):

    branch    resolution   layers (3x3 unless noted, LeakyReLU 0.1, replicate padding)
    local     H x W        5 -> 12, 12 -> 12
    context   H/4 x W/4    5 -> 16, 16 -> 16 (dilation 2), 16 -> 16 (dilation 4)  (receptive field ~120 px)
    head      H x W        28 -> 12 (1x1), FiLM, 12 -> 2 (3x3; zero-initialised)
    FiLM      per image    foreground mean of the context features (16) -> linear -> (scale, shift) of the
                           head's 12 hidden channels, zero-initialised: an image-level context

Why this shape (the measurements are in reports/flagship/README.md):

* Scored the CDDFuse way, pixel-max already beats CDDFuse's published numbers on 5 of 8 metrics in two of the
  three modality pairs; every hand rule that mixes in detail coefficients (Laplacian max-abs, base/detail with
  a blurred base, unsharp masking) lost MI and VIF far more than it gained SF. A convex mix keeps the fused
  grey levels a function of the sources' (MI, SSIM, VIF), so the network only has to learn WHERE to take which
  source, and the residual is kept small (R).
* The skip ``(a - b) / T0`` (T0 = 0.05) makes the untrained network the soft max rule, which on the validation
  pairs beat hard max on EN and MI; the zero-initialised head starts exactly there and learns corrections.
* The image-level context (FiLM) lets one network treat the modality pairs differently (CT-MRI wants a
  stronger intensity pull than PET/SPECT-MRI) without a modality flag: it sees global statistics of both
  sources, averaged over the foreground (where either source is above 1/255) so that a training crop and a
  whole slice of the same pair give about the same vector.
* Few channels at full resolution and a 4x-downsampled context branch keep it cheap: 8,210 parameters and
  0.36 GFLOPs per 256x256 pair (``flops_per_pixel``), measured 20x faster than the naive float32 MFEnet loop.
* The residual bound, loss weights and checkpoint were chosen by the short runs recorded in that report.
* Any size works: the pooling uses ``ceil_mode`` and the context is resized back to the exact input size.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .base import FusionMethod, count_parameters, with_shipped_weights  # noqa: F401 (count_parameters)
from .weight_mix import T0, WeightMixOutput  # noqa: F401 (T0: the tests' soft-max check)

# Recorded in the weights manifest; change it whenever the layer layout changes.
ARCHITECTURE = ("medfusionnet-v2: x=(a,b,a-b,|Sa|,|Sb|); local 5-12-12 @1; context avgpool4, 5-16-16(d2)-16(d4); "
                "head 1x1 28-12, FiLM from the foreground mean of the context (linear 16-24), 3x3 12-2; "
                "w = sigmoid((a-b)/0.05 + h0), F = w a + (1-w) b + 0.05 tanh(h1)")
LOCAL, CONTEXT, HEAD = 12, 16, 12
POOL = 4
RESIDUAL = 0.05  # bound of the additive correction
INPUTS = 5
FOREGROUND = 1.0 / 255  # a pixel where either source is above this counts for the image-level context
_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0


def sobel(x: torch.Tensor):
    """(Sx, Sy) Sobel responses (normalised by 8) of (N, 1, H, W) images, replicated borders."""
    kernel = torch.stack([_SOBEL_X, _SOBEL_X.t()])[:, None].to(x)
    g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel)
    return g[:, :1], g[:, 1:]


def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    gx, gy = sobel(x)
    return torch.sqrt(gx * gx + gy * gy + 1e-12)


def _conv(c_in, c_out, k=3, dilation=1):
    # Replicate padding where there is padding; a 1x1 has none, and with padding_mode "replicate" torch would
    # still copy its (28-channel, full-resolution) input through an empty pad: about a fifth of the network's time.
    return nn.Conv2d(c_in, c_out, k, padding=dilation * (k // 2), dilation=dilation,
                     padding_mode="replicate" if k > 1 else "zeros")


class MedFusionNet(WeightMixOutput):
    """See the module docstring. ``forward`` returns the raw fused image, ``fuse`` the clamped one (weight_mix.py)."""

    residual_bound = RESIDUAL

    def __init__(self):
        super().__init__()
        act = lambda: nn.LeakyReLU(0.1)  # noqa: E731
        self.local = nn.Sequential(_conv(INPUTS, LOCAL), act(), _conv(LOCAL, LOCAL), act())
        self.context = nn.Sequential(_conv(INPUTS, CONTEXT), act(), _conv(CONTEXT, CONTEXT, dilation=2), act(),
                                     _conv(CONTEXT, CONTEXT, dilation=4), act())
        self.head = nn.Sequential(_conv(LOCAL + CONTEXT, HEAD, 1), act(), _conv(HEAD, 2))
        self.film = nn.Linear(CONTEXT, 2 * HEAD)
        for layer in (self.head[-1], self.film):  # start as the soft max rule, with no image-level modulation
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def heads(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The raw (h0, h1) maps of weight_mix.py, (N, 2, H, W)."""
        h, w = a.shape[-2:]
        x = torch.cat([a, b, a - b, sobel_magnitude(a), sobel_magnitude(b)], dim=1)
        pooled = F.avg_pool2d(x, POOL, ceil_mode=True)
        context = self.context(pooled)
        image_context = _foreground_mean(context, pooled[:, :2].amax(1, keepdim=True))
        scale, shift = self.film(image_context)[..., None, None].chunk(2, 1)
        context = F.interpolate(context, size=(h, w), mode="bilinear", align_corners=False)
        hidden = self.head[0](torch.cat([self.local(x), context], dim=1)) * (1 + scale) + shift
        return self.head[2](self.head[1](hidden))


def _foreground_mean(features: torch.Tensor, sources_max: torch.Tensor) -> torch.Tensor:
    """(N, C) mean of ``features`` over the pixels where a source is above FOREGROUND (all pixels if none is)."""
    mask = (sources_max > FOREGROUND).to(features)
    mask = torch.where(mask.flatten(1).sum(1, keepdim=True)[..., None, None] > 0, mask, torch.ones_like(mask))
    return (features * mask).flatten(2).sum(2) / mask.flatten(2).sum(2)


def flops_per_pixel() -> float:
    """Multiply-adds x 2 per output pixel of the convolutions (the context branch at 1/POOL^2 of the pixels)."""
    macs = 9 * (INPUTS * LOCAL + LOCAL * LOCAL) + (LOCAL + CONTEXT) * HEAD + 9 * HEAD * 2
    macs += 9 * (INPUTS * CONTEXT + 2 * CONTEXT * CONTEXT) / POOL ** 2
    return 2.0 * macs


def load_model(device="cpu", weights_dir=None) -> MedFusionNet:
    """MedFusion-Net with the shipped weights (sha256-checked, ``weights_only=True``), in eval mode on ``device``."""
    return with_shipped_weights(MedFusionNet(), "medfusionnet", device, weights_dir)


def build(device, *, weights_dir=None) -> FusionMethod:
    """Method factory (see registry.py)."""
    model = load_model(device, weights_dir)
    return FusionMethod("medfusionnet", model.fuse, model, device)
