r"""U-Net fusion network (the U-Net family's representative; inference only, training in
``MedFusionTraining/unetfusion.py``).

Follows Fan F, Huang Y, Wang L, et al., 'A semantic-based medical image fusion approach', arXiv:1906.00225,
2019 (the survey seed's U-Net fusion entry, ref. [18]): its Fusion W-Net (FW-Net) is two
U-Nets (Ronneberger, Fischer & Brox, 'U-Net: convolutional networks for biomedical image segmentation', MICCAI
2015) in a W: the first fuses the two sources into one image, the second reconstructs the sources from that
fused image, so the fused image has to keep what each source means (its "semantics"). Only the first U-Net
fuses; it is what ships. The reconstruction U-Net is a training-time loss (MedFusionTraining/unetfusion.py).

    U-Net   (a, b) -> F; two 3x3 convolutions per level (LeakyReLU 0.1, replicate padding), 2x2 max pooling down,
            bilinear up-sampling + skip concatenation up, a 1x1 output convolution (linear, clamped by ``fuse``)
      down  2 -> 16 (H x W), 16 -> 32 (H/2), 32 -> 64 (H/4, bottom)
      up    64 + 32 -> 32 (H/2), 32 + 16 -> 16 (H x W), 16 -> 1

Where this departs from the papers, and why:

* Size: the original U-Net has 5 levels of 64-1024 channels (31 M parameters); ours has 3 levels of 16-64
  channels (118,129 parameters, 3.7 GFLOPs per 256x256 slice: ``flops_per_pixel``) so it trains within the
  ~12-minute one-thread CPU budget; its receptive field (about 45 pixels across) still spans the anatomy's
  edges on 256x256 slices.
* Padding: 'same' replicate padding (Ronneberger's U-Net used unpadded convolutions and cropped skips) so the
  output has the input's size; any size is fused by padding it (replicate) up to a multiple of 4 and cropping back.
* Bilinear up-sampling instead of transposed convolutions (no checkerboard artefacts, fewer parameters).
* Loss: the content terms MedFusion's other networks use (intensity toward max(A, B), gradient toward the
  stronger source) plus FW-Net's reconstruction term; FW-Net's own intensity terms were not reproduced (see the
  training module).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .base import FusionMethod, count_parameters, with_shipped_weights  # noqa: F401 (count_parameters)

# Recorded in the weights manifest; change it whenever the layer layout changes.
ARCHITECTURE = ("unetfusion-v1: U-Net (a,b) -> F; levels 16 @1, 32 @1/2, 64 @1/4; two 3x3 convs per level, LeakyReLU "
                "0.1, replicate padding, max pool 2, bilinear up + skip concat, 1x1 linear output clamped to [0, 1]")
WIDTHS = (16, 32, 64)
MULTIPLE = 2 ** (len(WIDTHS) - 1)  # the input is padded to a multiple of this


def _double_conv(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode="replicate"), nn.LeakyReLU(0.1),
                         nn.Conv2d(c_out, c_out, 3, padding=1, padding_mode="replicate"), nn.LeakyReLU(0.1))


class UNet(nn.Module):
    """A small U-Net from ``c_in`` to ``c_out`` channels, any input size (padded, then cropped back)."""

    def __init__(self, c_in: int = 2, c_out: int = 1, widths=WIDTHS):
        super().__init__()
        chans = (c_in,) + tuple(widths)
        self.down = nn.ModuleList(_double_conv(i, o) for i, o in zip(chans, chans[1:]))
        self.up = nn.ModuleList(_double_conv(widths[k + 1] + widths[k], widths[k]) for k in range(len(widths) - 1))
        self.out = nn.Conv2d(widths[0], c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % MULTIPLE, (-w) % MULTIPLE
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x
        skips = []
        for k, block in enumerate(self.down):
            x = block(x if k == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for k in reversed(range(len(self.up))):
            x = F.interpolate(x, size=skips[k].shape[-2:], mode="bilinear", align_corners=False)
            x = self.up[k](torch.cat([x, skips[k]], dim=1))
        return self.out(x)[..., :h, :w]


class UNetFusion(nn.Module):
    """The fusing U-Net of FW-Net. ``forward(a, b)`` returns the raw fused image, ``fuse`` the clamped one."""

    def __init__(self):
        super().__init__()
        self.unet = UNet(2, 1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.unet(torch.cat([a, b], dim=1))

    def fuse(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self(a, b).clamp(0.0, 1.0)


def flops_per_pixel(c_in: int = 2, c_out: int = 1) -> float:
    """Multiply-adds x 2 per input pixel of the convolutions (level k at 1/4^k of the pixels; pooling and
    up-sampling not counted)."""
    chans = (c_in,) + WIDTHS
    macs = sum(9 * (i * o + o * o) / 4 ** k for k, (i, o) in enumerate(zip(chans, chans[1:])))
    macs += sum(9 * ((WIDTHS[k + 1] + WIDTHS[k]) * WIDTHS[k] + WIDTHS[k] ** 2) / 4 ** k for k in range(len(WIDTHS) - 1))
    return 2.0 * (macs + WIDTHS[0] * c_out)


def load_model(device="cpu", weights_dir=None) -> UNetFusion:
    """The fusing U-Net with the shipped weights (sha256-checked, ``weights_only=True``), eval mode on ``device``."""
    return with_shipped_weights(UNetFusion(), "unetfusion", device, weights_dir)


def build(device, *, weights_dir=None) -> FusionMethod:
    """Method factory (see registry.py)."""
    model = load_model(device, weights_dir)
    return FusionMethod("unetfusion", model.fuse, model, device)
