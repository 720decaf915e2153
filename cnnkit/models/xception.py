"""Xception (Chollet 2017): Inception taken to the limit, as depthwise separable convolutions with residuals.

For a 3×299×299 input (Figure 5 of the paper; "sep" = 3×3 depthwise + 1×1 pointwise, no bias)::

    stem    conv 32 3×3 /2, conv 64 3×3 (no padding), BN-ReLU each   -> 147×147×64
    entry   3 blocks: [sep-BN, ReLU, sep-BN, max 3×3 /2] + 1×1/2 conv-BN shortcut,
            widths 128, 256, 728                                     -> 19×19×728
    middle  8 blocks: 3 × [ReLU, sep 728-BN] + identity shortcut     -> 19×19×728
    exit    [ReLU, sep 728-BN, ReLU, sep 1024-BN, max 3×3 /2] + shortcut,
            sep 1536-BN-ReLU, sep 2048-BN-ReLU                       -> 10×10×2048
    head    global average pool, dropout 0.5, fc num_classes

22,855,952 parameters for 1000 classes, the paper's Table 3 count. Works at any input from 7×7 up
(32×32 or more is sensible).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..layers import SeparableConv2d
from ._contract import IMAGENET_MEAN, IMAGENET_STD, Classifier, linear_head, pool_flat
from ._registry import register_model

# (sep conv widths, stride) per block; entry flow's first block starts without ReLU
ENTRY: list[tuple[tuple[int, ...], int]] = [((128, 128), 2), ((256, 256), 2), ((728, 728), 2)]
MIDDLE: list[tuple[tuple[int, ...], int]] = [((728, 728, 728), 1)] * 8
EXIT: list[tuple[tuple[int, ...], int]] = [((728, 1024), 2)]


class XceptionBlock(nn.Module):
    """Residual block of separable convs: ``[ReLU] sep-BN`` per width, then a 3×3/2 max pool when ``stride`` is 2.

    The shortcut is a strided 1×1 conv-BN when the shape changes, else the identity.
    Shapes: Tensor[N, in_chans, H, W] -> Tensor[N, widths[-1], ceil(H / stride), ceil(W / stride)].
    """

    def __init__(self, in_chans: int, widths: Sequence[int], stride: int = 1, first_relu: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_chans
        for i, w in enumerate(widths):
            if i > 0 or first_relu:
                layers.append(nn.ReLU(inplace=i > 0))  # the first must not overwrite the shortcut's input
            layers += [SeparableConv2d(c, w), nn.BatchNorm2d(w)]
            c = w
        if stride > 1:
            layers.append(nn.MaxPool2d(3, stride, padding=1))
        self.body = nn.Sequential(*layers)
        same = stride == 1 and c == in_chans
        self.skip = (
            nn.Identity() if same else nn.Sequential(nn.Conv2d(in_chans, c, 1, stride, bias=False), nn.BatchNorm2d(c))
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + self.skip(x)


def _flow(in_chans: int, cfg: list[tuple[tuple[int, ...], int]], first_relu: bool = True) -> tuple[nn.Sequential, int]:
    blocks = []
    for i, (widths, stride) in enumerate(cfg):
        blocks.append(XceptionBlock(in_chans, widths, stride, first_relu=first_relu or i > 0))
        in_chans = widths[-1]
    return nn.Sequential(*blocks), in_chans


def _sep_bn_relu(in_chans: int, out_chans: int) -> list[nn.Module]:
    return [SeparableConv2d(in_chans, out_chans), nn.BatchNorm2d(out_chans), nn.ReLU(inplace=True)]


class Xception(Classifier):
    default_input = (3, 299, 299)

    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans, mean=IMAGENET_MEAN, std=IMAGENET_STD)
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, 32, 3, 2, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
        )  # fmt: skip
        self.entry, c = _flow(64, ENTRY, first_relu=False)
        self.middle, c = _flow(c, MIDDLE)
        exit_block, c = _flow(c, EXIT)
        self.exit = nn.Sequential(*exit_block, *_sep_bn_relu(c, 1536), *_sep_bn_relu(1536, 2048))
        self.num_features = 2048
        self.drop = nn.Dropout(dropout)
        self.fc = linear_head(2048, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """x: Tensor[N, in_chans, H, W] -> Tensor[N, 2048, h, w] (10×10 at 299)."""
        self.check_input(x)
        return self.exit(self.middle(self.entry(self.stem(x))))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """x: Tensor[N, 2048, h, w] -> Tensor[N, 2048] pooled or Tensor[N, num_classes] logits."""
        x = self.drop(pool_flat(x))
        return x if pre_logits else self.fc(x)

    def group_matcher(self) -> dict[str, list[str]]:
        return {"stem": ["stem"], "entry": ["entry"], "middle": ["middle"], "exit": ["exit"], "head": ["fc"]}


@register_model(family="Xception", paper="Chollet 2017, Xception: Deep Learning with Depthwise Separable Convolutions",
                default_input=(3, 299, 299))  # fmt: skip
def xception(*, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5) -> Xception:
    """Xception: 36 conv layers in 14 residual blocks of separable convs, 22.9 M parameters, 299×299 input."""
    return Xception(num_classes=num_classes, in_chans=in_chans, dropout=dropout)
