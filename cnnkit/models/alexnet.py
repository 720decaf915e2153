"""AlexNet (Krizhevsky, Sutskever & Hinton 2012), paper-exact, as in the notes' layer list.

Layer by layer for a 3×227×227 input (out = (in + 2·pad − kernel)/stride + 1)::

    conv1  96 11×11 /4          (227 − 11)/4 + 1 = 55  -> 55×55×96        34,944 params
    pool1  max 3×3 /2           (55 − 3)/2 + 1 = 27    -> 27×27×96
    norm1  LRN                                         -> 27×27×96
    conv2  256 5×5 pad 2                               -> 27×27×256      614,656
    pool2  max 3×3 /2           (27 − 3)/2 + 1 = 13    -> 13×13×256
    norm2  LRN                                         -> 13×13×256
    conv3  384 3×3 pad 1                               -> 13×13×384      885,120
    conv4  384 3×3 pad 1                               -> 13×13×384    1,327,488
    conv5  256 3×3 pad 1                               -> 13×13×256      884,992
    pool3  max 3×3 /2           (13 − 3)/2 + 1 = 6     -> 6×6×256
    fc6    4096, ReLU, dropout 0.5                     -> 4096        37,752,832
    fc7    4096, ReLU, dropout 0.5                     -> 4096        16,781,312
    fc8    1000                                        -> 1000         4,097,000   62,378,344 in all

This is the single-GPU version: conv2, conv4 and conv5 see all channels of the layer below. The paper's
two-GPU network splits them into two groups and has 60,965,224 parameters (its "60 million"). As in the
notes, pooling comes before the normalisation (the paper normalises first); ReLU follows every conv and FC.

The fully connected sizes are fixed, so the input must be 227×227; any other size is a CnnkitError that
shows this arithmetic. ZFNet (``zfnet.py``) shares the :class:`ConvFC` frame.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor, nn

from ..layers import lrn
from ._contract import IMAGENET_MEAN, IMAGENET_STD, Classifier, linear_head
from ._fixed import FixedInput
from ._registry import register_model
from ._torchvision import resolution_groups

# (name, out_chans, kernel, stride, padding) for convs; ("poolN",) max 3×3/2; ("normN",) LRN
LayerSpec = tuple  # ("conv1", 96, 11, 4, 0) | ("pool1",) | ("norm1",)

ALEXNET: list[LayerSpec] = [
    ("conv1", 96, 11, 4, 0), ("pool1",), ("norm1",),
    ("conv2", 256, 5, 1, 2), ("pool2",), ("norm2",),
    ("conv3", 384, 3, 1, 1), ("conv4", 384, 3, 1, 1), ("conv5", 256, 3, 1, 1), ("pool3",),
]  # fmt: skip


def make_layers(cfg: Sequence[LayerSpec], in_chans: int, ceil_mode: bool = False) -> nn.Sequential:
    """Named conv stack from a cfg table: each conv is followed by a ReLU, pools are max 3×3 stride 2."""
    layers: list[tuple[str, nn.Module]] = []
    c = in_chans
    for name, *spec in cfg:
        if name.startswith("conv"):
            out, k, s, p = spec
            layers += [(name, nn.Conv2d(c, out, k, s, p)), (name.replace("conv", "relu"), nn.ReLU(inplace=True))]
            c = out
        elif name.startswith("pool"):
            layers.append((name, nn.MaxPool2d(3, 2, ceil_mode=ceil_mode)))
        else:
            layers.append((name, lrn()))
    return nn.Sequential(OrderedDict(layers))


class ConvFC(FixedInput, Classifier):
    """A paper-exact conv stack and the FC6–FC7–FC8 head of the 2012–2013 ImageNet winners.

    Args:
        features: conv stack mapping Tensor[N, in_chans, H, W] (H, W = default_input) to Tensor[N, C, h, w].
        flat: C·h·w, the width FC6 reads.
        arch: registered name, used in error messages.
        num_classes: FC8 width.
        in_chans: input channels.
        dropout: dropout after FC6 and FC7.
    """

    def __init__(
        self, features: nn.Sequential, flat: int, *, arch: str, num_classes: int, in_chans: int, dropout: float = 0.5
    ) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans, mean=IMAGENET_MEAN, std=IMAGENET_STD)
        self.arch = arch
        self.features = features
        self.pre_logits = nn.Sequential(
            OrderedDict(
                flatten=nn.Flatten(),
                fc6=nn.Linear(flat, 4096),
                relu6=nn.ReLU(inplace=True),
                drop6=nn.Dropout(dropout),
                fc7=nn.Linear(4096, 4096),
                relu7=nn.ReLU(inplace=True),
                drop7=nn.Dropout(dropout),
            )
        )
        self.num_features = 4096
        self.fc = linear_head(4096, num_classes)  # FC8

    def forward_features(self, x: Tensor) -> Tensor:
        """x: Tensor[N, in_chans, H, W] at exactly default_input -> Tensor[N, 256, 6, 6] (pool3)."""
        self.check_input(x)
        return self.features(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """x: Tensor[N, 256, 6, 6] -> Tensor[N, 4096] (FC7) or Tensor[N, num_classes] (FC8)."""
        x = self.pre_logits(x)
        return x if pre_logits else self.fc(x)

    def group_matcher(self) -> dict[str, list[str]]:
        return {**resolution_groups("features", self.features), "head": ["pre_logits", "fc"]}


class AlexNet(ConvFC):
    default_input = (3, 227, 227)

    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5) -> None:
        features = make_layers(ALEXNET, in_chans)
        super().__init__(
            features, 256 * 6 * 6, arch="alexnet", num_classes=num_classes, in_chans=in_chans, dropout=dropout
        )


@register_model(
    family="AlexNet",
    paper="Krizhevsky, Sutskever & Hinton 2012, ImageNet Classification with Deep CNNs (single-GPU)",
    default_input=(3, 227, 227),
)
def alexnet(*, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5) -> AlexNet:
    """Paper-exact single-GPU AlexNet with LRN, 227×227 input, 62.4 M parameters (1000 classes)."""
    return AlexNet(num_classes=num_classes, in_chans=in_chans, dropout=dropout)
