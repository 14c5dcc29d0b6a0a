r"""SwinFusion-S: a small CNN-Transformer hybrid after SwinFusion (inference only; training in
``MedFusionTraining/swinfusion.py``).

Follows Ma, Tang, Fan, Huang, Mei & Ma, 'SwinFusion: cross-domain long-range learning for general image fusion
via Swin Transformer', IEEE/CAA J. Autom. Sinica 9(7): 1200-1217, 2022, doi:10.1109/JAS.2022.105686:

    per source   shallow CNN features      3x3 1->8, 3x3 8->8 (LeakyReLU 0.1), full resolution
                 patch embedding            3x3 stride-2 conv 8->16 (tokens at H/2 x W/2)
                 intra-domain fusion unit   2 Swin blocks: window self-attention, then SHIFTED windows
    both         inter-domain fusion unit   2 Swin blocks of cross-attention per source (queries from one source,
                                            keys/values from the other), plain then shifted windows
                 reconstruction             1x1 32->16 at H/2, bilinear up, ++ both shallow features (8+8),
                                            3x3 32->16, 3x3 16->2 (zero-initialised)

Each Swin block: LayerNorm, window multi-head attention (window 8 tokens = 16x16 pixels, 2 heads of 8 channels,
learnt relative position bias, the shifted-window mask of Liu et al., ICCV 2021), residual; LayerNorm, MLP
16-32-16 (GELU), residual.

The two output maps make the fused image (as MedFusion-Net; methods/weight_mix.py):

    w = sigmoid((a - b) / T0 + h0),   F = w a + (1 - w) b + R tanh(h1)       T0 = 0.05, R = 0.1

Where it departs from the paper, and why:

* Size (CPU): SwinFusion runs 60-channel tokens at full resolution, 6 heads, several Swin layers per unit; here
  16 channels at half resolution, 2 heads, 2 + 2 blocks, so that a 256x256 slice costs about 2 GFLOPs and the
  network trains in about 9 minutes on one CPU thread. The full-resolution shallow features are concatenated
  into the reconstruction so that the half-resolution tokens do not blur edges.
* Output: SwinFusion's reconstruction emits the fused image directly. Here it predicts a per-pixel weight (from a
  soft pixel-max start: the zero-initialised last layer makes the untrained network exactly that rule) plus a
  bounded residual, MedFusion-Net's output stage (reports/flagship/README.md): the fused grey levels stay those
  of the sources, the attention decides WHERE each source is taken from, and a short CPU training starts from
  a good rule rather than from noise. A direct output was not tried here.
* Loss: the paper's SSIM + texture (max Sobel magnitude) + intensity (max) loss with its weights 10 / 20 / 20
  (MedFusionTraining/swinfusion.py); without its information-measure weighting of the SSIM terms.
* Any size: the input is padded (replicate) to a multiple of 2 x window and the output cropped back.

Deterministic on the CPU: convolutions, linear layers, batched matrix products, softmax, rolls; no scatter.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .base import FusionMethod, count_parameters, with_shipped_weights  # noqa: F401 (count_parameters)
from .weight_mix import WeightMixOutput

ARCHITECTURE = ("swinfusion-s-v1: per source conv 1-8-8 @1, embed 3x3/2 8->16; intra 2 Swin blocks (W8, S4), "
                "inter 2 cross-attention Swin blocks per source; dim 16, 2 heads, MLP x2, rel. pos. bias; "
                "recon 1x1 32-16 @1/2, up, ++ shallow 8+8, 3x3 32-16, 3x3 16-2; "
                "w = sigmoid((a-b)/0.05 + h0), F = w a + (1-w) b + 0.1 tanh(h1)")
SHALLOW, DIM, HEADS, WINDOW, MLP_RATIO = 8, 16, 2, 8, 2
STRIDE = 2  # tokens at 1/STRIDE of the resolution
RESIDUAL = 0.1  # bound of the additive correction
_MASKED = -100.0  # added to attention logits across a shifted window's wrap-around (as Swin)


def _conv(c_in, c_out, k=3, stride=1):
    # A 1x1 has no padding: "replicate" would still copy its input through an empty pad (see medfusionnet.py).
    return nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, padding_mode="replicate" if k > 1 else "zeros")


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(N, H, W, C) -> (N * windows, window^2, C), windows in row-major order."""
    n, h, w, c = x.shape
    x = x.view(n, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, c)


def window_reverse(windows: torch.Tensor, window: int, n: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`."""
    x = windows.view(n, h // window, w // window, window, window, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h, w, -1)


def shifted_window_mask(h: int, w: int, window: int, shift: int, device) -> torch.Tensor:
    """(windows, T, T) additive mask: after the cyclic shift, tokens from different image regions of one window
    must not attend to each other (Liu et al., Swin Transformer, ICCV 2021)."""
    region = torch.zeros(1, h, w, 1, device=device)
    label = 0
    for ys in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for xs in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            region[:, ys, xs, :] = label
            label += 1
    labels = window_partition(region, window).squeeze(-1)
    return (labels[:, None, :] != labels[:, :, None]).float() * _MASKED


def _relative_position_index(window: int) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


class WindowAttention(nn.Module):
    """Multi-head attention inside windows with a learnt relative position bias; queries from ``x``, keys and
    values from ``context`` (itself for self-attention, the other source for cross-attention)."""

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.q, self.kv, self.proj = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)
        self.bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        self.register_buffer("bias_index", _relative_position_index(window).flatten(), persistent=False)

    def forward(self, x, context, mask=None):
        b, t, c = x.shape
        d = c // self.heads
        q = self.q(x).view(b, t, self.heads, d).transpose(1, 2) * self.scale
        k, v = self.kv(context).view(b, t, 2, self.heads, d).permute(2, 0, 3, 1, 4)
        attn = q @ k.transpose(-2, -1)
        attn = attn + self.bias_table[self.bias_index].view(t, t, self.heads).permute(2, 0, 1)[None]
        if mask is not None:
            windows = mask.shape[0]
            attn = (attn.view(b // windows, windows, self.heads, t, t) + mask[None, :, None]).view(b, self.heads, t, t)
        out = attn.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, t, c))


class SwinBlock(nn.Module):
    """One Swin Transformer block on (N, H, W, C) tokens; ``shift`` > 0 for the shifted-window variant."""

    def __init__(self, dim: int, heads: int, window: int, shift: int):
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window)
        self.mlp = nn.Sequential(nn.Linear(dim, MLP_RATIO * dim), nn.GELU(), nn.Linear(MLP_RATIO * dim, dim))

    def forward(self, x, context=None, mask=None):
        n, h, w, c = x.shape
        q = self.norm1(x)
        kv = q if context is None else self.norm1(context)
        if self.shift:
            q = torch.roll(q, (-self.shift, -self.shift), dims=(1, 2))
            kv = q if context is None else torch.roll(kv, (-self.shift, -self.shift), dims=(1, 2))
        out = self.attn(window_partition(q, self.window), window_partition(kv, self.window),
                        mask if self.shift else None)
        out = window_reverse(out, self.window, n, h, w)
        if self.shift:
            out = torch.roll(out, (self.shift, self.shift), dims=(1, 2))
        x = x + out
        return x + self.mlp(self.norm2(x))


def _unit():
    """A fusion unit: a plain-window block, then a shifted-window block."""
    return nn.ModuleList([SwinBlock(DIM, HEADS, WINDOW, 0), SwinBlock(DIM, HEADS, WINDOW, WINDOW // 2)])


class SwinFusionS(WeightMixOutput):
    """See the module docstring. ``forward`` returns the raw fused image, ``fuse`` the clamped one (weight_mix.py)."""

    residual_bound = RESIDUAL

    def __init__(self):
        super().__init__()
        act = lambda: nn.LeakyReLU(0.1)  # noqa: E731
        self.shallow = nn.ModuleList([nn.Sequential(_conv(1, SHALLOW), act(), _conv(SHALLOW, SHALLOW), act())
                                      for _ in range(2)])
        self.embed = nn.ModuleList([_conv(SHALLOW, DIM, stride=STRIDE) for _ in range(2)])
        self.intra = nn.ModuleList([_unit() for _ in range(2)])
        self.inter = nn.ModuleList([_unit() for _ in range(2)])
        self.squeeze = nn.Sequential(_conv(2 * DIM, DIM, 1), act())
        self.head = nn.Sequential(_conv(DIM + 2 * SHALLOW, DIM), act(), _conv(DIM, 2))
        nn.init.zeros_(self.head[-1].weight)  # start as the soft max rule
        nn.init.zeros_(self.head[-1].bias)

    def heads(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The raw (h0, h1) maps of weight_mix.py, (N, 2, H, W), for any H, W."""
        h, w = a.shape[-2:]
        multiple = STRIDE * WINDOW
        pad = (0, (-w) % multiple, 0, (-h) % multiple)
        sources = [F.pad(a, pad, mode="replicate"), F.pad(b, pad, mode="replicate")]
        shallow = [net(x) for net, x in zip(self.shallow, sources)]
        tokens = [embed(s).permute(0, 2, 3, 1) for embed, s in zip(self.embed, shallow)]  # (N, h', w', C)
        th, tw = tokens[0].shape[1:3]
        mask = shifted_window_mask(th, tw, WINDOW, WINDOW // 2, a.device)
        for i in range(2):  # intra-domain: self-attention within each source
            for block in self.intra[i]:
                tokens[i] = block(tokens[i], mask=mask)
        for plain_a, plain_b in zip(self.inter[0], self.inter[1]):  # inter-domain: each source queries the other
            tokens = [plain_a(tokens[0], tokens[1], mask), plain_b(tokens[1], tokens[0], mask)]
        fused = self.squeeze(torch.cat(tokens, dim=-1).permute(0, 3, 1, 2))
        fused = F.interpolate(fused, size=sources[0].shape[-2:], mode="bilinear", align_corners=False)
        return self.head(torch.cat([fused] + shallow, dim=1))[..., :h, :w]


def load_model(device="cpu", weights_dir=None) -> SwinFusionS:
    """SwinFusion-S with the shipped weights (sha256-checked, ``weights_only=True``), in eval mode on ``device``."""
    return with_shipped_weights(SwinFusionS(), "swinfusion", device, weights_dir)


def build(device, *, weights_dir=None) -> FusionMethod:
    """Method factory (see registry.py)."""
    model = load_model(device, weights_dir)
    return FusionMethod("swinfusion", model.fuse, model, device)
