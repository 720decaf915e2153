"""SE-ResNet-50 (Hu, Shen & Sun 2018, Squeeze-and-Excitation Networks).

torchvision's ResNet-50 with a squeeze-and-excitation gate (reduction 16) on every bottleneck's residual
branch, applied after the last BN and before the addition (the paper's Figure 3)::

    conv1 1×1 -> conv2 3×3 -> conv3 1×1 (C = 4·planes) -> SE: avg pool, FC C/16, ReLU, FC C, sigmoid, scale
    -> + shortcut -> ReLU

SE adds 2,530,992 parameters to ResNet-50's 25,557,032: 28,088,024 for 1000 classes (paper: 28.1 M).
Module names are torchvision's plus ``layerI.J.se.fc1/fc2``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor
from torchvision.models.resnet import Bottleneck

from ..layers import SqueezeExcite
from ._registry import register_model
from .resnet import ResNet


class SEBottleneck(Bottleneck):
    """torchvision's Bottleneck with :class:`SqueezeExcite` before the addition; shapes as ``Bottleneck``."""

    def __init__(self, *args: Any, reduction: int = 16, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.se = SqueezeExcite(self.conv3.out_channels, reduction)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.se(self.bn3(self.conv3(out)))
        return self.relu(out + identity)


@register_model(family="SENet", paper="Hu, Shen & Sun 2018, Squeeze-and-Excitation Networks")
def se_resnet50(*, num_classes: int = 1000, in_chans: int = 3) -> ResNet:
    """SE-ResNet-50: ResNet-50 with SE (reduction 16) in every bottleneck, 28.1 M parameters."""
    return ResNet(SEBottleneck, [3, 4, 6, 3], num_classes=num_classes, in_chans=in_chans)
