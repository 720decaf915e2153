"""A pool-first CNN for fast training on small grayscale images (the ``fast`` recipe's model).

The shape follows Keller Jordan's airbench, the network of the CIFAR-10 training speedruns: a tiny 2×2 stem,
then blocks that pool right after their first convolution, so the second convolution of each block and
everything after it run at half the resolution::

    stem    conv2×2 24 (no padding)                                   -> 24×27×27
    block1  conv3×3 32, max pool 2, BN, ReLU, conv3×3 32, BN, ReLU     -> 32×13×13
    block2  conv3×3 64, max pool 2, BN, ReLU, conv3×3 64, BN, ReLU     -> 64×6×6
    block3  conv3×3 128, max pool 2, BN, ReLU, conv3×3 128, BN, ReLU   -> 128×3×3
    head    global avg pool, dropout, fc                              -> num_classes

About 0.29 M parameters and 15 M multiply-accumulates at 28×28, half of ``smallcnn``'s; it trains twice as
many images per second on a CPU and reaches a higher accuracy in the same wall time. Input at least 9×9.
"""

from __future__ import annotations

import itertools

from torch import Tensor, nn

from ..layers import conv_bn_act
from ._contract import Classifier, linear_head, pool_flat
from ._registry import register_model
from .smallcnn import FASHION_MNIST_MEAN, FASHION_MNIST_STD


class PoolFirstBlock(nn.Sequential):
    """conv3×3 -> max pool 2 -> BN -> ReLU -> conv3×3 -> BN -> ReLU.

    Shapes: Tensor[N, in_chans, H, W] -> Tensor[N, out_chans, H // 2, W // 2].
    """

    def __init__(self, in_chans: int, out_chans: int) -> None:
        super().__init__(
            nn.Conv2d(in_chans, out_chans, 3, padding=1, bias=False),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(out_chans),
            nn.ReLU(inplace=True),
            conv_bn_act(out_chans, out_chans),
        )


class FastCNN(Classifier):
    default_input = (1, 28, 28)

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_chans: int = 1,
        stem_width: int = 24,
        widths: tuple[int, ...] = (32, 64, 128),
        dropout: float = 0.0,
    ) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans, mean=FASHION_MNIST_MEAN, std=FASHION_MNIST_STD)
        self.stem = conv_bn_act(in_chans, stem_width, kernel_size=2)  # even kernel: no padding, 28 -> 27
        chans = (stem_width, *widths)
        self.blocks = nn.Sequential(*(PoolFirstBlock(a, b) for a, b in itertools.pairwise(chans)))
        self.num_features = widths[-1]
        self.drop = nn.Dropout(dropout)
        self.fc = linear_head(self.num_features, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """x: Tensor[N, in_chans, H, W] -> Tensor[N, 128, (H - 1) // 8, (W - 1) // 8]."""
        return self.blocks(self.stem(x))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """x: Tensor[N, 128, h, w] -> Tensor[N, 128] pooled or Tensor[N, num_classes] logits."""
        x = self.drop(pool_flat(x))
        return x if pre_logits else self.fc(x)

    def group_matcher(self) -> dict[str, list[str]]:
        blocks = {f"block{i + 1}": [f"blocks.{i}"] for i in range(len(self.blocks))}
        return {"stem": ["stem"], **blocks, "head": ["fc"]}


@register_model(
    family="cnnkit",
    paper="Jordan 2024, airbench (CIFAR-10 speedruns): pool-first conv blocks",
    default_input=(1, 28, 28),
)
def fastcnn(*, num_classes: int = 10, in_chans: int = 1, dropout: float = 0.0) -> FastCNN:
    """The ``fast`` recipe's model: 93 % on Fashion-MNIST in 4–5 epochs (2 minutes on 2 CPU cores with native
    bf16, 5.6 in fp32 on AVX2-only cores)."""
    return FastCNN(num_classes=num_classes, in_chans=in_chans, dropout=dropout)
