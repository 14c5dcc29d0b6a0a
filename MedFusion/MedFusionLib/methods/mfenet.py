r"""MFEnet: multi-scale feature learning + edge enhancement fusion network (seed paper 000, Table 1).

The paper trains an encoder-decoder as an autoencoder on single images, then fuses at test time:
encode both sources, fuse the two feature maps with a rule (max-abs), decode, and add the Canny edge maps of
both sources (edge enhancement).

Mapping of the paper's Table 1 to layers (Table 1 lists 10 conv layers, every one followed by ReLU, and
groups C1-C6 as the feature extraction module and C7-C10 as the reconstruction module):

    layer  kernel            in -> out   here
    C1     3x3               1  -> 64    encoder.c1, ReLU                       (shallow features)
    C2     3x3 dilation 1    64 -> 64    encoder.c2, ReLU  \
    C3     3x3 dilation 3    64 -> 64    encoder.c3, ReLU   } parallel on C1's output, concatenated (192 ch)
    C4     3x3 dilation 5    64 -> 64    encoder.c4, ReLU  /
    C5     1x1               192 -> 64   encoder.c5, ReLU, then + C1's output (skip connection, added)
    C6     3x3               64 -> 64    encoder.c6, ReLU  -> the features that are fused
    C7     3x3               64 -> 64    decoder.c7, ReLU
    C8     3x3               64 -> 32    decoder.c8, ReLU
    C9     3x3               32 -> 16    decoder.c9, ReLU
    C10    3x3               16 -> 1     decoder.c10, no ReLU (linear); clamped to [0, 1] when fusing

Table 1's "Size" column reads 3, 1, 3, 5, 1, 3, ... : for C2..C4 it gives the dilation rates 1, 3, 5, the
text says all three kernels are 3x3. Padding = dilation everywhere so that H x W is kept.

Ambiguities and the choices made here (the paper is silent or self-contradictory):

* Encoder/decoder split. The text says the encoder ends with "two 3x3 conv layers" after the skip connection
  (that would be C6, C7) and that the reconstruction module has "four 3x3 conv layers" (C7-C10); with only
  10 layers both cannot hold. Table 1 (as laid out on the publisher's page) puts C1-C6 in the feature
  extraction module and C7-C10 in the reconstruction module, which agrees with the text's four decoder
  layers, so we follow the table: the encoder has ONE 3x3 conv after the skip (C6) and the features are
  fused after C6. The parameter count (220,865) does not depend on this choice, only the fusion point does.
* Skip connection: "shallow features skip-connected to the multi-scale features": added (same 64 channels),
  after C5's ReLU, before C6.
* Output activation. Table 1 lists ReLU after C10 as well. A ReLU output cannot be negative, but it has zero
  gradient wherever its input is negative, so pixels (or, at a bad initialisation, the whole output) can die;
  a sigmoid cannot reach the exact 0 background and 1 highlights that dominate these images without
  saturating its gradient. We keep C10 linear during training (the loss sees the raw output) and clamp to
  [0, 1] when fusing, which also bounds decoded fused features that leave the training range.
* Fusion rule "max" (Eq. 1): F1 where |F1| >= |F2| else F2, element-wise over all 64 channels. Because C6 ends
  in a ReLU the features are >= 0, so max-abs equals the element-wise maximum here.
* "Weighted average" rule (Table 4, "softmax on the source features to get two weight maps"): per element,
  a softmax over the two sources of the feature magnitudes, w1 = e^|F1| / (e^|F1| + e^|F2|), w2 = 1 - w1,
  F = w1 F1 + w2 F2 (magnitudes = values for these non-negative features). Called "softmax" here.
* "add" is F1 + F2, "average" is (F1 + F2) / 2.
* Edge enhancement (Eq. 2) I_f = I_mf + Canny(I1) + Canny(I2) with binary Canny maps: we write
  I_f = clip(I_mf + w (E1 + E2), 0, 1) with E in {0, 1} (see edges.py for the thresholds). The paper's
  w = 1 (the default) paints every source edge white; w = 0 switches the branch off. For reading images we
  would recommend w around 0.2-0.3 (edges visible as a brightening without hiding the intensity underneath),
  but the default stays the paper's 1.
* Gradient operator in the loss (not given): forward differences in x and y (see ``reconstruction_loss`` in
  MedFusionTraining/mfenet.py, where this network's training lives).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import InputError
from . import REGISTRY
from .base import FusionMethod, count_parameters, with_shipped_weights  # noqa: F401 (count_parameters)

# Recorded in the weights manifest; change it whenever the layer layout changes.
ARCHITECTURE = "mfenet-table1-v1: encoder C1-C6, decoder C7-C10, linear C10"
RULES = REGISTRY.get("mfenet").options["rule"].choices  # declared once, on the registry entry


def _conv(cin: int, cout: int, kernel: int = 3, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, padding=dilation * (kernel // 2), dilation=dilation)


class Encoder(nn.Module):
    """C1..C6 of Table 1: shallow 3x3, three dilated 3x3 (1, 3, 5) in parallel, 1x1, skip add, one 3x3."""

    def __init__(self):
        super().__init__()
        self.c1 = _conv(1, 64)
        self.c2 = _conv(64, 64, dilation=1)
        self.c3 = _conv(64, 64, dilation=3)
        self.c4 = _conv(64, 64, dilation=5)
        self.c5 = _conv(192, 64, kernel=1)
        self.c6 = _conv(64, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shallow = F.relu(self.c1(x))
        multi = torch.cat([F.relu(self.c2(shallow)), F.relu(self.c3(shallow)), F.relu(self.c4(shallow))], dim=1)
        y = F.relu(self.c5(multi)) + shallow
        return F.relu(self.c6(y))


class Decoder(nn.Module):
    """C7..C10 of Table 1: 3x3 convs 64 -> 64 -> 32 -> 16 -> 1; the last one linear (see the module docstring)."""

    def __init__(self):
        super().__init__()
        self.c7 = _conv(64, 64)
        self.c8 = _conv(64, 32)
        self.c9 = _conv(32, 16)
        self.c10 = _conv(16, 1)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.c7(f))
        y = F.relu(self.c8(y))
        y = F.relu(self.c9(y))
        return self.c10(y)


class MFEnet(nn.Module):
    """Encoder + decoder; ``forward`` is the training-time autoencoder (raw, unclamped reconstruction)."""

    def __init__(self):
        super().__init__()
        self.encoder = Encoder()
        self.decoder = Decoder()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def fuse_features(self, a: torch.Tensor, b: torch.Tensor, rule: str = "max") -> torch.Tensor:
        """Encode each source batch once, fuse the features with ``rule``, decode; result clamped to [0, 1]."""
        fa, fb = self.encoder(a), self.encoder(b)
        # The encoder ends in a ReLU, so |f| = f and the max-abs rule is the element-wise maximum: the same
        # values in one pass instead of two abs and a where.
        fused = torch.maximum(fa, fb) if rule == "max" else fuse_features(fa, fb, rule)
        return self.decoder(fused).clamp_(0.0, 1.0)


def fuse_features(f1: torch.Tensor, f2: torch.Tensor, rule: str = "max") -> torch.Tensor:
    """The fusion module: element-wise rule over two feature maps of the same shape (see module docstring)."""
    if rule == "max":
        return torch.where(f1.abs() >= f2.abs(), f1, f2)
    if rule == "add":
        return f1 + f2
    if rule == "average":
        return 0.5 * (f1 + f2)
    if rule == "softmax":
        w1 = torch.sigmoid(f1.abs() - f2.abs())  # = e^|f1| / (e^|f1| + e^|f2|), computed stably
        return w1 * f1 + (1.0 - w1) * f2
    raise InputError(f"MFEnet has no fusion rule '{rule}'; choose one of: {', '.join(RULES)}.")


def edge_enhance(fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor, edge_weight: float) -> torch.Tensor:
    """I_f = clip(I_mf + w (Canny(a) + Canny(b)), 0, 1); w = 0 returns ``fused`` unchanged."""
    if edge_weight == 0:
        return fused
    from ..edges import canny_edges

    edges = canny_edges(a) + canny_edges(b)  # {0, 1} each, on a's device
    return (fused + edge_weight * edges).clamp_(0.0, 1.0)


def load_model(device="cpu", weights_dir=None) -> MFEnet:
    """MFEnet with the shipped weights (sha256-checked, ``weights_only=True``), in eval mode on ``device``."""
    return with_shipped_weights(MFEnet(), "mfenet", device, weights_dir)


def build(device, rule: str = "max", edge_weight: float = 0.0, *, weights_dir=None) -> FusionMethod:
    """Method factory (see registry.py; options checked there against their declaration)."""
    model = load_model(device, weights_dir)

    def fuse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return edge_enhance(model.fuse_features(a, b, rule), a, b, edge_weight)

    return FusionMethod("mfenet", fuse, model, device)
