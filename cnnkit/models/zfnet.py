"""ZFNet (Zeiler & Fergus 2013, "Visualizing and Understanding Convolutional Networks"), paper-exact.

AlexNet with a smaller, denser first layer (7×7 stride 2 instead of 11×11 stride 4, the fix the paper's
visualisations suggested), stride 2 in conv2, and one tower (384, 384, 256 filters in conv3–5).
Layer by layer for a 3×224×224 input (pools use Caffe's ceil rounding, as in the paper's figure)::

    conv1  96 7×7 /2 pad 1      (224 + 2 − 7)/2 + 1 = 110.5 -> 110  -> 110×110×96     14,208 params
    pool1  max 3×3 /2           (110 − 3)/2 + 1 = 54.5 -> 55        -> 55×55×96
    norm1  contrast (LRN)
    conv2  256 5×5 /2           (55 − 5)/2 + 1 = 26                 -> 26×26×256     614,656
    pool2  max 3×3 /2           (26 − 3)/2 + 1 = 12.5 -> 13         -> 13×13×256
    norm2  contrast (LRN)
    conv3  384 3×3 pad 1                                            -> 13×13×384     885,120
    conv4  384 3×3 pad 1                                            -> 13×13×384   1,327,488
    conv5  256 3×3 pad 1                                            -> 13×13×256     884,992
    pool3  max 3×3 /2           (13 − 3)/2 + 1 = 6                  -> 6×6×256
    fc6 4096, fc7 4096 (ReLU, dropout 0.5), fc8 1000                             58,631,144

62,357,608 parameters in all for 1000 classes (the paper gives no total; it is AlexNet's budget).
The input must be 224×224; other sizes are a CnnkitError that shows this arithmetic.
"""

from __future__ import annotations

from ._registry import register_model
from .alexnet import ConvFC, LayerSpec, make_layers

ZFNET: list[LayerSpec] = [
    ("conv1", 96, 7, 2, 1), ("pool1",), ("norm1",),
    ("conv2", 256, 5, 2, 0), ("pool2",), ("norm2",),
    ("conv3", 384, 3, 1, 1), ("conv4", 384, 3, 1, 1), ("conv5", 256, 3, 1, 1), ("pool3",),
]  # fmt: skip


class ZFNet(ConvFC):
    default_input = (3, 224, 224)

    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5) -> None:
        features = make_layers(ZFNET, in_chans, ceil_mode=True)
        super().__init__(
            features, 256 * 6 * 6, arch="zfnet", num_classes=num_classes, in_chans=in_chans, dropout=dropout
        )


@register_model(
    family="ZFNet", paper="Zeiler & Fergus 2013, Visualizing and Understanding CNNs", default_input=(3, 224, 224)
)
def zfnet(*, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5) -> ZFNet:
    """Paper-exact ZFNet: 7×7/2 first layer with 96 filters, LRN, 224×224 input, 62.4 M parameters."""
    return ZFNet(num_classes=num_classes, in_chans=in_chans, dropout=dropout)
