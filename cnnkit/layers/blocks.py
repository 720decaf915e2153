"""Convolution building blocks shared by the hand-written families (torchvision's own where it has them)."""

from __future__ import annotations

from torch import nn
from torchvision.ops import Conv2dNormActivation


def conv_bn_act(
    in_chans: int, out_chans: int, kernel_size: int = 3, stride: int = 1, groups: int = 1, act: type = nn.ReLU
) -> nn.Sequential:
    """Conv (no bias, 'same' padding for odd kernels) -> BatchNorm -> activation: torchvision's
    ``Conv2dNormActivation`` (a ``Sequential`` with children 0, 1, 2, so state-dict keys are unchanged).

    Shapes: Tensor[N, in_chans, H, W] -> Tensor[N, out_chans, ceil(H / stride), ceil(W / stride)].
    """
    inplace = True if act in (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish) else None
    return Conv2dNormActivation(
        in_chans, out_chans, kernel_size, stride, groups=groups, activation_layer=act, inplace=inplace
    )
