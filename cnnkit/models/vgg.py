"""VGG (Simonyan & Zisserman 2014), configurations A, A-LRN, B, C, D, E of the paper's Table 1, paper-exact.

3×3 convolutions (stride 1, pad 1, so they keep the size) and five 2×2/2 max pools take a 224×224 input to
224 -> 112 -> 56 -> 28 -> 14 -> 7, and FC6 reads exactly 7×7×512 = 25,088 values; then FC 4096-4096-1000.
A-LRN adds one LRN after the first conv; C puts a 1×1 conv third in each of the last three stages.

Parameters for 1000 classes (paper's Table 2 in brackets)::

    vgg11    A      132,863,336  (133 M)        vgg16_c  C   133,638,952  (134 M)
    vgg11_lrn A-LRN 132,863,336  (133 M)        vgg16    D   138,357,544  (138 M)
    vgg13    B      133,047,848  (133 M)        vgg19    E   143,667,240  (144 M)

The ``_bn`` variants add BatchNorm after every conv (torchvision's; not in the paper). The classes subclass
``torchvision.models.VGG`` and use its module names (``features.N``, ``classifier.N``), so torchvision's
vgg11/13/16/19(_bn) checkpoints load. torchvision's ``AdaptiveAvgPool2d((7, 7))`` is replaced by an
identity: another input size is a CnnkitError that shows the arithmetic instead of being silently resampled.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision import models as tvm

from ..layers import lrn
from ._fixed import FixedInput
from ._registry import register_model
from ._torchvision import FeaturesClassifier

PAPER = "Simonyan & Zisserman 2014, Very Deep Convolutional Networks"

# int: conv3-N; (N, 1): conv1-N; "M": max pool 2×2/2; "LRN": local response normalisation
cfgs: dict[str, list[int | str | tuple[int, int]]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "A-LRN": [64, "LRN", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [64, 64, "M", 128, 128, "M", 256, 256, (256, 1), "M", 512, 512, (512, 1), "M", 512, 512, (512, 1), "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def make_layers(cfg: list[int | str | tuple[int, int]], batch_norm: bool, in_chans: int) -> nn.Sequential:
    """torchvision's ``make_layers`` (same indices for A, B, D, E) plus LRN, 1×1 convs and ``in_chans``."""
    layers: list[nn.Module] = []
    c = in_chans
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        elif v == "LRN":
            layers.append(lrn())
        else:
            out, k = v if isinstance(v, tuple) else (v, 3)
            layers.append(nn.Conv2d(c, out, k, padding=k // 2))
            layers += [nn.BatchNorm2d(out), nn.ReLU(inplace=True)] if batch_norm else [nn.ReLU(inplace=True)]
            c = out
    return nn.Sequential(*layers)


class VGG(FixedInput, FeaturesClassifier, tvm.VGG):
    """torchvision's VGG at the paper's fixed 224×224 input.

    Args:
        cfg: key of :data:`cfgs`.
        batch_norm: BatchNorm after every conv.
        arch: registered name, for error messages.
        num_classes: FC8 width.
        in_chans: input channels.
        dropout: dropout after FC6 and FC7.
    """

    default_input = (3, 224, 224)
    head_path, stem_path = "classifier.6", "features.0"

    def __init__(
        self, cfg: str, *, batch_norm: bool, arch: str, num_classes: int, in_chans: int, dropout: float = 0.5
    ) -> None:
        tvm.VGG.__init__(self, make_layers(cfgs[cfg], batch_norm, in_chans), num_classes=num_classes, dropout=dropout)
        self.avgpool = nn.Identity()  # the paper's 224 input gives exactly 7×7 here; other sizes fail check_input
        self.arch = arch
        self.init_contract(num_classes=num_classes, in_chans=in_chans)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """x: Tensor[N, 512, 7, 7] -> Tensor[N, 4096] (FC7) or Tensor[N, num_classes] (FC8)."""
        x = self.classifier[:-1](torch.flatten(x, 1))
        return x if pre_logits else self.classifier[-1](x)


def _vgg(cfg: str, arch: str, batch_norm: bool, num_classes: int, in_chans: int, dropout: float) -> VGG:
    return VGG(cfg, batch_norm=batch_norm, arch=arch, num_classes=num_classes, in_chans=in_chans, dropout=dropout)


@register_model(family="VGG", paper=f"{PAPER}, config A")
def vgg11(*, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5) -> VGG:
    """VGG-11 (A): 8 conv + 3 FC layers, 132.9 M parameters."""
    return _vgg("A", "vgg11", False, num_classes, in_chans, dropout)


@register_model(family="VGG", paper=f"{PAPER}, config A-LRN")
def vgg11_lrn(*, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5) -> VGG:
    """VGG-11 with LRN after the first conv (A-LRN), 132.9 M parameters."""
    return _vgg("A-LRN", "vgg11_lrn", False, num_classes, in_chans, dropout)


@register_model(family="VGG", paper=f"{PAPER}, config B")
def vgg13(*, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5) -> VGG:
    """VGG-13 (B): 10 conv + 3 FC layers, 133.0 M parameters."""
    return _vgg("B", "vgg13", False, num_classes, in_chans, dropout)


@register_model(family="VGG", paper=f"{PAPER}, config C")
def vgg16_c(*, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5) -> VGG:
    """VGG-16 (C): 1×1 convs third in the last three stages, 133.6 M parameters."""
    return _vgg("C", "vgg16_c", False, num_classes, in_chans, dropout)


@register_model(family="VGG", paper=f"{PAPER}, config D")
def vgg16(*, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5) -> VGG:
    """VGG-16 (D): 13 conv + 3 FC layers, 138.4 M parameters."""
    return _vgg("D", "vgg16", False, num_classes, in_chans, dropout)


@register_model(family="VGG", paper=f"{PAPER}, config E")
def vgg19(*, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5) -> VGG:
    """VGG-19 (E): 16 conv + 3 FC layers, 143.7 M parameters."""
    return _vgg("E", "vgg19", False, num_classes, in_chans, dropout)


@register_model(family="VGG", paper=f"{PAPER}, config A + BatchNorm")
def vgg11_bn(*, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5) -> VGG:
    """VGG-11 (A) with BatchNorm after every conv."""
    return _vgg("A", "vgg11_bn", True, num_classes, in_chans, dropout)


@register_model(family="VGG", paper=f"{PAPER}, config B + BatchNorm")
def vgg13_bn(*, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5) -> VGG:
    """VGG-13 (B) with BatchNorm after every conv."""
    return _vgg("B", "vgg13_bn", True, num_classes, in_chans, dropout)


@register_model(family="VGG", paper=f"{PAPER}, config D + BatchNorm")
def vgg16_bn(*, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5) -> VGG:
    """VGG-16 (D) with BatchNorm after every conv."""
    return _vgg("D", "vgg16_bn", True, num_classes, in_chans, dropout)


@register_model(family="VGG", paper=f"{PAPER}, config E + BatchNorm")
def vgg19_bn(*, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5) -> VGG:
    """VGG-19 (E) with BatchNorm after every conv."""
    return _vgg("E", "vgg19_bn", True, num_classes, in_chans, dropout)
