"""Depthwise separable convolutions: MobileNet v1's conv-BN-ReLU pair and Xception's bare pair."""

from __future__ import annotations

from torch import Tensor, nn

from .blocks import conv_bn_act


def depthwise_separable(in_chans: int, out_chans: int, stride: int = 1, act: type = nn.ReLU) -> nn.Sequential:
    """MobileNet v1 block: 3×3 depthwise conv-BN-act, then 1×1 pointwise conv-BN-act.

    Shapes: Tensor[N, in_chans, H, W] -> Tensor[N, out_chans, ceil(H / stride), ceil(W / stride)].
    """
    return nn.Sequential(
        conv_bn_act(in_chans, in_chans, 3, stride, groups=in_chans, act=act),
        conv_bn_act(in_chans, out_chans, 1, act=act),
    )


class SeparableConv2d(nn.Module):
    """Xception's separable conv: a depthwise ``k×k`` conv and a 1×1 pointwise conv, no norm between, no bias.

    Shapes: Tensor[N, in_chans, H, W] -> Tensor[N, out_chans, H, W] (stride 1, 'same' padding).
    """

    def __init__(self, in_chans: int, out_chans: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_chans, in_chans, kernel_size, padding=kernel_size // 2, groups=in_chans, bias=False
        )
        self.pointwise = nn.Conv2d(in_chans, out_chans, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))
