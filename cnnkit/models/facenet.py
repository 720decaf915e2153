"""FaceNet's two embedding networks (Schroff, Kalenichenko & Philbin 2015, Tables 1 and 2), as the notes give
them (seed 003, the tables under "Zeiler-Fergus (ZF)" and "GoogLeNet").

Both map a face crop to a 128-d embedding on the unit sphere (L2-normalised), where the squared distance
between two faces says whether they are the same person.

**NN1** (Zeiler&Fergus-based, 220×220×3, 1×1 convolutions between the 3×3 ones, maxout FC layers). Max pools
are 3×3 stride 2 with padding 1 (out = ⌊(in + 2 − 3)/2⌋ + 1)::

    conv1   7×7×3 /2 p3   220 -> 110×110×64        9K       pool1 -> 55×55×64, rnorm1
    conv2a  1×1  -> 55×55×64     4K    conv2 3×3 -> 55×55×192  111K    rnorm2, pool2 -> 28×28×192
    conv3a  1×1  -> 28×28×192   37K    conv3 3×3 -> 28×28×384  664K    pool3 -> 14×14×384
    conv4a  1×1  -> 14×14×384  148K    conv4 3×3 -> 14×14×256  885K
    conv5a, conv5, conv6a, conv6 (256 each)  66K + 590K + 66K + 590K    pool4 -> 7×7×256, concat
    fc1     maxout p=2  7·7·256 -> 32×128 (Linear 12544 -> 2·4096, max of each pair)   103M
    fc2     maxout p=2  4096 -> 32×128                                                   34M
    fc7128  4096 -> 128     524K                   L2 -> 128             140.7 M parameters in all

**NN2** (Inception-based, 224×224×3, L2 pooling in several modules). Each inception module concatenates a
1×1 branch, 1×1 -> 3×3, 1×1 -> 5×5 and a pool branch (max or L2 3×3, then a 1×1 projection); in 3c and 4e
the 3×3, 5×5 and the max pool have stride 2 and there is no 1×1 branch nor projection::

    conv1 7×7/2 -> 112×112×64, max pool + norm -> 56×56×64, inception (2) 1×1 64 -> 3×3 192 -> 56×56×192
    norm + max pool -> 28×28×192, 3a -> 28×28×256, 3b -> 28×28×320, 3c -> 14×14×640,
    4a, 4b, 4c, 4d -> 14×14×640, 4e -> 7×7×1024, 5a, 5b -> 7×7×1024, avg pool -> 1024, fc -> 128, L2
    7.46 M parameters (the table: 7.5M)

The tables give no BatchNorm, so there is none: each conv has a bias and a ReLU. The contract: the table's
network ends at the L2 embedding, which is ``forward_head(x, pre_logits=True)`` (``num_features = 128``).
``num_classes`` is an optional softmax layer on top of the embedding (0, the default, gives the table's
network: ``model(x)`` is the embedding itself).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import lrn
from ._contract import IMAGENET_MEAN, IMAGENET_STD, Classifier, linear_head
from ._fixed import FixedInput
from ._registry import register_model


class Maxout(nn.Module):
    """A maxout fully connected layer: ``pieces`` linear units per output, keep the largest.

    Shapes: Tensor[N, in_features] -> Tensor[N, out_features] (the weight is Tensor[out_features·pieces, in]).
    """

    def __init__(self, in_features: int, out_features: int, pieces: int = 2) -> None:
        super().__init__()
        self.in_features, self.out_features, self.pieces = in_features, out_features, pieces
        linear = nn.Linear(in_features, out_features * pieces)  # nn.Linear's initialisation; one layer in explain
        self.weight, self.bias = linear.weight, linear.bias

    def forward(self, x: Tensor) -> Tensor:
        y = F.linear(x, self.weight, self.bias)  # [N, out·pieces]
        return y.view(*y.shape[:-1], self.out_features, self.pieces).amax(-1)  # [N, out]


class L2Pool(nn.Module):
    """L2 pooling: the square root of the sum of squares in each ``k×k`` window (zero padding keeps the size at
    stride 1). A small epsilon keeps the gradient finite where a window is all zeros.

    Shapes: Tensor[N, C, H, W] -> Tensor[N, C, ⌊(H + 2p − k)/s⌋ + 1, ...].
    """

    def __init__(self, kernel_size: int = 3, stride: int = 1, padding: int = 1) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x: Tensor) -> Tensor:
        k = self.kernel_size
        mean_sq = F.avg_pool2d(x.square(), k, self.stride, self.padding, count_include_pad=True)
        return (mean_sq * (k * k) + 1e-12).sqrt()


class L2Norm(nn.Module):
    """Scale each row to unit length: Tensor[N, D] -> Tensor[N, D] with ‖x_i‖₂ = 1."""

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=1)


def max_pool(stride: int = 2) -> nn.MaxPool2d:
    """3×3 max pool with padding 1 (TensorFlow's SAME at stride 2 for even sizes)."""
    return nn.MaxPool2d(3, stride, padding=1)


def conv(c_in: int, c_out: int, k: int, stride: int = 1) -> list[nn.Module]:
    """Conv with "same" padding and its ReLU."""
    return [nn.Conv2d(c_in, c_out, k, stride, k // 2), nn.ReLU(inplace=True)]


class FaceNetBase(Classifier):
    """The shared contract part: ``features`` (conv stack), ``embedding`` (ends in :class:`L2Norm`), ``fc``."""

    features: nn.Sequential
    embedding: nn.Sequential

    def __init__(self, *, num_classes: int, in_chans: int, embedding_dim: int) -> None:
        super().__init__(num_classes=max(num_classes, 1), in_chans=in_chans, mean=IMAGENET_MEAN, std=IMAGENET_STD)
        self.num_classes = num_classes
        self.num_features = self.embedding_dim = embedding_dim

    def forward_features(self, x: Tensor) -> Tensor:
        """x: Tensor[N, C, H, W] -> the last conv map Tensor[N, C', 7, 7] (at the default input)."""
        self.check_input(x)
        return self.features(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """x: the feature map -> the L2-normalised embedding Tensor[N, 128] (``pre_logits``, or when
        ``num_classes`` is 0), else the softmax layer's logits Tensor[N, num_classes]."""
        x = self.embedding(x)
        return x if pre_logits else self.fc(x)


# NN1: (name, out_chans, kernel, stride) for convs; ("poolN",) max 3×3/2 p1; ("rnormN",) LRN; ("concat",)
NN1: list[tuple] = [
    ("conv1", 64, 7, 2), ("pool1",), ("rnorm1",),
    ("conv2a", 64, 1, 1), ("conv2", 192, 3, 1), ("rnorm2",), ("pool2",),
    ("conv3a", 192, 1, 1), ("conv3", 384, 3, 1), ("pool3",),
    ("conv4a", 384, 1, 1), ("conv4", 256, 3, 1), ("conv5a", 256, 1, 1), ("conv5", 256, 3, 1),
    ("conv6a", 256, 1, 1), ("conv6", 256, 3, 1), ("pool4",), ("concat",),
]  # fmt: skip


def nn1_features(in_chans: int) -> nn.Sequential:
    """NN1's conv stack from the :data:`NN1` table: Tensor[N, C, 220, 220] -> Tensor[N, 256, 7, 7]."""
    layers: list[tuple[str, nn.Module]] = []
    c = in_chans
    for name, *spec in NN1:
        if name.startswith("conv"):
            out, k, s = spec
            conv_layer, relu = conv(c, out, k, s)
            layers += [(name, conv_layer), (name.replace("conv", "relu"), relu)]
            c = out
        elif name.startswith("pool"):
            layers.append((name, max_pool()))
        elif name.startswith("rnorm"):
            layers.append((name, lrn()))
        else:
            layers.append((name, nn.Identity()))  # the table's concat joins one tower here: a no-op
    return nn.Sequential(OrderedDict(layers))


class FaceNetNN1(FixedInput, FaceNetBase):
    """FaceNet NN1 (see the module docstring); its fully connected sizes fix the input at 220×220."""

    default_input = (3, 220, 220)

    def __init__(self, *, num_classes: int = 0, in_chans: int = 3, embedding_dim: int = 128) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans, embedding_dim=embedding_dim)
        self.arch = "facenet_nn1"
        self.features = nn1_features(in_chans)
        self.embedding = nn.Sequential(
            OrderedDict(
                flatten=nn.Flatten(),
                fc1=Maxout(7 * 7 * 256, 32 * 128, 2),
                fc2=Maxout(32 * 128, 32 * 128, 2),
                fc7128=nn.Linear(32 * 128, embedding_dim),
                l2=L2Norm(),
            )
        )
        self.fc = linear_head(embedding_dim, num_classes)

    def group_matcher(self) -> dict[str, list[str]]:
        convs = [f"features.{n}" for n, m in self.features.named_children() if isinstance(m, nn.Conv2d)]
        return {"stem": convs[:1], "conv2_3": convs[1:5], "conv4_6": convs[5:], "head": ["embedding", "fc"]}


class Inception(nn.Module):
    """One NN2 inception module; the branches are concatenated along the channels.

    Args:
        c_in: input channels.
        c1: the 1×1 branch's width (0: no such branch).
        c3r, c3: the 3×3 branch's 1×1 reduction and 3×3 widths; c5r, c5 likewise for 5×5.
        pool: "max" or "l2" (3×3); proj: the pool branch's 1×1 projection (0: none).
        stride: 2 in the reducing modules (3c, 4e): the 3×3, the 5×5 and the pool have stride 2.
    """

    def __init__(self, c_in: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool: str, proj: int,
                 stride: int = 1) -> None:  # fmt: skip
        super().__init__()
        self.branch1 = nn.Sequential(*conv(c_in, c1, 1)) if c1 else None
        self.branch3 = nn.Sequential(*conv(c_in, c3r, 1), *conv(c3r, c3, 3, stride))
        self.branch5 = nn.Sequential(*conv(c_in, c5r, 1), *conv(c5r, c5, 5, stride))
        pooling = max_pool(stride) if pool == "max" else L2Pool(3, stride, 1)
        self.branch_pool = nn.Sequential(pooling, *(conv(c_in, proj, 1) if proj else []))
        self.out_chans = c1 + c3 + c5 + (proj or c_in)

    def forward(self, x: Tensor) -> Tensor:
        """Tensor[N, c_in, H, W] -> Tensor[N, out_chans, H/stride, W/stride]."""
        branches = [self.branch1] if self.branch1 is not None else []
        return torch.cat([b(x) for b in (*branches, self.branch3, self.branch5, self.branch_pool)], 1)


# NN2's inception rows: name -> (#1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool, proj, stride)
NN2: dict[str, tuple] = {
    "inception3a": (64, 96, 128, 16, 32, "max", 32, 1),
    "inception3b": (64, 96, 128, 32, 64, "l2", 64, 1),
    "inception3c": (0, 128, 256, 32, 64, "max", 0, 2),
    "inception4a": (256, 96, 192, 32, 64, "l2", 128, 1),
    "inception4b": (224, 112, 224, 32, 64, "l2", 128, 1),
    "inception4c": (192, 128, 256, 32, 64, "l2", 128, 1),
    "inception4d": (160, 144, 288, 32, 64, "l2", 128, 1),
    "inception4e": (0, 160, 256, 64, 128, "max", 0, 2),
    "inception5a": (384, 192, 384, 48, 128, "l2", 128, 1),
    "inception5b": (384, 192, 384, 48, 128, "max", 128, 1),
}


def nn2_features(in_chans: int) -> nn.Sequential:
    """NN2's stem and inception modules: Tensor[N, C, 224, 224] -> Tensor[N, 1024, 7, 7]."""
    conv1, relu1 = conv(in_chans, 64, 7, 2)
    layers: list[tuple[str, nn.Module]] = [("conv1", conv1), ("relu1", relu1), ("pool1", max_pool()),
                                           ("norm1", lrn()), ("inception2", nn.Sequential(*conv(64, 64, 1),
                                                                                          *conv(64, 192, 3))),
                                           ("norm2", lrn()), ("pool2", max_pool())]  # fmt: skip
    c = 192
    for name, spec in NN2.items():
        module = Inception(c, *spec)
        layers.append((name, module))
        c = module.out_chans
    return nn.Sequential(OrderedDict(layers))


class FaceNetNN2(FaceNetBase):
    """FaceNet NN2 (see the module docstring); global average pooling lets it take other input sizes."""

    default_input = (3, 224, 224)

    def __init__(self, *, num_classes: int = 0, in_chans: int = 3, embedding_dim: int = 128) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans, embedding_dim=embedding_dim)
        self.features = nn2_features(in_chans)
        self.embedding = nn.Sequential(
            OrderedDict(
                avgpool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc128=nn.Linear(1024, embedding_dim), l2=L2Norm()
            )
        )
        self.fc = linear_head(embedding_dim, num_classes)

    def group_matcher(self) -> dict[str, list[str]]:
        return {
            "stem": ["features.conv1", "features.inception2"],
            "inception3": [f"features.inception3{c}" for c in "abc"],
            "inception4": [f"features.inception4{c}" for c in "abcde"],
            "inception5": ["features.inception5a", "features.inception5b"],
            "head": ["embedding", "fc"],
        }


PAPER = "Schroff, Kalenichenko & Philbin 2015, FaceNet"


@register_model(family="FaceNet", paper=f"{PAPER} (NN1, Zeiler&Fergus-based)", default_input=(3, 220, 220))
def facenet_nn1(*, num_classes: int = 0, in_chans: int = 3, embedding_dim: int = 128) -> FaceNetNN1:
    """FaceNet NN1: 220×220 input, maxout FC layers, 128-d L2-normalised embedding, 140.7 M parameters."""
    return FaceNetNN1(num_classes=num_classes, in_chans=in_chans, embedding_dim=embedding_dim)


@register_model(family="FaceNet", paper=f"{PAPER} (NN2, Inception-based)", default_input=(3, 224, 224))
def facenet_nn2(*, num_classes: int = 0, in_chans: int = 3, embedding_dim: int = 128) -> FaceNetNN2:
    """FaceNet NN2: 224×224 input, inception modules with L2 pooling, 128-d L2-normalised embedding, 7.5 M
    parameters."""
    return FaceNetNN2(num_classes=num_classes, in_chans=in_chans, embedding_dim=embedding_dim)
