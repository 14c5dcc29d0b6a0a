r"""DDcGAN-style fusion generator (the GAN family's representative; inference only, the two discriminators and
the adversarial training live in ``MedFusionTraining/ddcgan.py``).

Follows Ma, Xu, Jiang, Mei & Zhang, 'DDcGAN: a dual-discriminator conditional generative adversarial network
for multi-resolution image fusion', IEEE Trans. Image Process. 29: 4980-4995, 2020, doi:10.1109/TIP.2020.2977573:
a generator G fuses the two sources; two discriminators, one per source, each try to tell that source from G's
output, so G is pushed to keep what makes either source recognisable; a content loss keeps G close to the
sources' intensities and gradients.

    generator   (N, 2, H, W) = (a, b) -> F (N, 1, H, W)   3x3 convolutions, LeakyReLU 0.2, replicate padding
      encoder   2 -> 12, then a dense block of 3 layers (growth 12; each sees every earlier feature map): 48
      decoder   48 -> 24 -> 12 -> 1                         linear output, clamped to [0, 1] by ``fuse``

Where this departs from the paper, and why:

* Size: DDcGAN's generator has a 48-channel encoder, a 4-layer dense block and a 5-layer decoder (about 0.3 M
  parameters); ours keeps the shape (conv, dense block, conv decoder) at 12-channel growth: 21,145
  parameters and 2.8 GFLOPs per 256x256 slice (``flops_per_pixel``), so that it trains within the ~12-minute
  one-thread CPU budget.
* Equal resolution: DDcGAN fuses a low-resolution infrared (or PET) image with a high-resolution one through
  deconvolution and a down-sampling operator before its second discriminator; our pairs are co-registered at one
  resolution (the engine resamples B onto A's grid), so both sources enter G directly and neither is down-sampled.
* Symmetric sources: DDcGAN takes intensity from one source and texture from the other; MedFusion fuses any
  pair in either order, so the content loss asks for the brighter source's intensity and the stronger source's
  gradient at each pixel (training module).
* Linear output + clamp instead of the paper's tanh: inputs and outputs are in [0, 1], and a saturating output
  cannot reach the exact black background of the Harvard slices.
* The objective: least squares (LSGAN, Mao et al. ICCV 2017) with spectral norm on the discriminators
  (see MedFusionTraining/ddcgan.py), for the stability the survey seed asks for.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import FusionMethod, count_parameters, with_shipped_weights  # noqa: F401 (count_parameters)

# Recorded in the weights manifest; change it whenever the layer layout changes.
ARCHITECTURE = ("ddcgan-v1 generator: conv 2-12; dense block 3 x 12 (-> 48); decoder 48-24-12-1; 3x3, LeakyReLU 0.2, "
                "replicate padding, linear output clamped to [0, 1]")
BASE, GROWTH, DENSE_LAYERS = 12, 12, 3
DECODER = (24, 12)


def _conv(c_in, c_out):
    return nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode="replicate")


class DDcGANGenerator(nn.Module):
    """See the module docstring. ``forward(a, b)`` returns the raw fused image, ``fuse`` the clamped one."""

    def __init__(self):
        super().__init__()
        self.act = nn.LeakyReLU(0.2)
        self.stem = _conv(2, BASE)
        self.dense = nn.ModuleList(_conv(BASE + i * GROWTH, GROWTH) for i in range(DENSE_LAYERS))
        widths = (BASE + DENSE_LAYERS * GROWTH,) + DECODER
        self.decoder = nn.ModuleList(_conv(c_in, c_out) for c_in, c_out in zip(widths, widths[1:]))
        self.out = _conv(widths[-1], 1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        features = self.act(self.stem(torch.cat([a, b], dim=1)))
        for layer in self.dense:  # dense connections: each layer sees all earlier feature maps
            features = torch.cat([features, self.act(layer(features))], dim=1)
        for layer in self.decoder:
            features = self.act(layer(features))
        return self.out(features)

    def fuse(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self(a, b).clamp(0.0, 1.0)


def flops_per_pixel() -> float:
    """Multiply-adds x 2 per output pixel of the convolutions (all at full resolution)."""
    channels = [(2, BASE)] + [(BASE + i * GROWTH, GROWTH) for i in range(DENSE_LAYERS)]
    widths = (BASE + DENSE_LAYERS * GROWTH,) + DECODER
    channels += list(zip(widths, widths[1:])) + [(widths[-1], 1)]
    return 2.0 * 9 * sum(c_in * c_out for c_in, c_out in channels)


def load_model(device="cpu", weights_dir=None) -> DDcGANGenerator:
    """The generator with the shipped weights (sha256-checked, ``weights_only=True``), in eval mode on ``device``."""
    return with_shipped_weights(DDcGANGenerator(), "ddcgan", device, weights_dir)


def build(device, *, weights_dir=None) -> FusionMethod:
    """Method factory (see registry.py)."""
    model = load_model(device, weights_dir)
    return FusionMethod("ddcgan", model.fuse, model, device)
