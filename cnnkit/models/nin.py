"""Network in Network (Lin, Chen & Yan 2014), the ImageNet model.

Each "mlpconv" layer is a k×k convolution followed by two 1×1 convolutions (a small MLP slid over the
image), all with ReLU. There are no fully connected layers: the last 1×1 convolution makes one map per
class and global average pooling turns each map into a logit. This is the 4-mlpconv ImageNet
configuration of the authors' Caffe model (conv widths as in AlexNet, 224×224 input; pools are 3×3/2 with
Caffe's ceil rounding)::

    mlpconv1  conv 96 11×11 /4, cccp 96, cccp 96         -> 54×54×96       53,568 params
    pool1     max 3×3 /2                                 -> 27×27×96
    mlpconv2  conv 256 5×5 pad 2, cccp 256, cccp 256     -> 27×27×256     746,240
    pool2     max 3×3 /2                                 -> 13×13×256
    mlpconv3  conv 384 3×3 pad 1, cccp 384, cccp 384     -> 13×13×384   1,180,800
    pool3     max 3×3 /2, dropout 0.5                    -> 6×6×384
    mlpconv4  conv 1024 3×3 pad 1, cccp 1024             -> 6×6×1024    4,589,568
    fc        cccp num_classes (1×1 conv), global avg    -> num_classes 1,025,000 (1000 classes)

7,595,176 parameters for 1000 classes (the paper tabulates no ImageNet count).
The class maps have no ReLU here, so the logits equal a linear layer on the pooled 1024 features, which
is what ``forward_head(x, pre_logits=True)`` returns. Works at any input from 39×39 up.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from ..layers import conv_relu
from ._contract import IMAGENET_MEAN, IMAGENET_STD, Classifier, pool_flat
from ._registry import register_model

# (out_chans, kernel, stride, padding, number of 1×1 "cccp" layers) per mlpconv; "M": max pool; "D": dropout
NIN_IMAGENET: list[tuple[int, int, int, int, int] | str] = [
    (96, 11, 4, 0, 2), "M", (256, 5, 1, 2, 2), "M", (384, 3, 1, 1, 2), "M", "D", (1024, 3, 1, 1, 1),
]  # fmt: skip


def mlpconv(in_chans: int, out_chans: int, kernel_size: int, stride: int, padding: int, cccp: int) -> nn.Sequential:
    """k×k conv + ReLU, then ``cccp`` × (1×1 conv + ReLU). Tensor[N, in, H, W] -> Tensor[N, out, H', W']."""
    layers = conv_relu(in_chans, out_chans, kernel_size, stride, padding)
    for _ in range(cccp):
        layers += conv_relu(out_chans, out_chans, 1)
    return nn.Sequential(*layers)


def class_maps(num_features: int, num_classes: int) -> nn.Module:
    """The last 1×1 conv: one map per class (``nn.Identity`` for a headless model)."""
    return nn.Conv2d(num_features, num_classes, 1) if num_classes > 0 else nn.Identity()


class NiN(Classifier):
    default_input = (3, 224, 224)

    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans, mean=IMAGENET_MEAN, std=IMAGENET_STD)
        layers: list[tuple[str, nn.Module]] = []
        c, n = in_chans, 0
        for v in NIN_IMAGENET:
            if v == "M":
                layers.append((f"pool{n}", nn.MaxPool2d(3, 2, ceil_mode=True)))
            elif v == "D":
                layers.append(("drop", nn.Dropout(dropout)))
            else:
                n += 1
                layers.append((f"mlpconv{n}", mlpconv(c, *v)))
                c = v[0]
        self.features = nn.Sequential(OrderedDict(layers))
        self.num_features = c
        self.fc = class_maps(c, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """x: Tensor[N, in_chans, H, W] -> Tensor[N, 1024, h, w] (6×6 at 224)."""
        self.check_input(x)
        return self.features(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """x: Tensor[N, 1024, h, w] -> Tensor[N, 1024] pooled, or Tensor[N, num_classes] pooled class maps."""
        return pool_flat(x) if pre_logits else pool_flat(self.fc(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = class_maps(self.num_features, num_classes)

    def group_matcher(self) -> dict[str, list[str]]:
        blocks = [f"features.{n}" for n, m in self.features.named_children() if n.startswith("mlpconv")]
        return {"stem": blocks[:1], **{f"stage{i}": [b] for i, b in enumerate(blocks[1:], 1)}, "head": ["fc"]}


@register_model(family="NiN", paper="Lin, Chen & Yan 2014, Network In Network (ImageNet model)")
def nin(*, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5) -> NiN:
    """Network in Network for ImageNet: 4 mlpconv layers, global average pooling, 7.6 M parameters."""
    return NiN(num_classes=num_classes, in_chans=in_chans, dropout=dropout)
