"""Convolution building blocks shared by the hand-written families."""

from __future__ import annotations

from torch import nn


def conv_bn_act(
    in_chans: int, out_chans: int, kernel_size: int = 3, stride: int = 1, groups: int = 1, act: type = nn.ReLU
) -> nn.Sequential:
    """Conv (no bias, 'same' padding for odd kernels) -> BatchNorm -> activation.

    Shapes: Tensor[N, in_chans, H, W] -> Tensor[N, out_chans, ceil(H / stride), ceil(W / stride)].
    """
    return nn.Sequential(
        nn.Conv2d(in_chans, out_chans, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_chans),
        act(inplace=True) if act in (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish) else act(),
    )
