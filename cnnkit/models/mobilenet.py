"""MobileNets: v1 (Howard et al. 2017, written here), v2 and v3 (torchvision's classes).

MobileNet v1 1.0-224 (the paper's Table 1): a 3×3/2 conv, then 13 depthwise separable blocks
(3×3 depthwise conv-BN-ReLU + 1×1 pointwise conv-BN-ReLU), global average pooling and one FC::

    conv 32 /2                        -> 112×112×32
    dw-sep 64, 128 /2, 128            -> 56×56×128
    dw-sep 256 /2, 256                -> 28×28×256
    dw-sep 512 /2, 5 × 512            -> 14×14×512
    dw-sep 1024 /2, 1024              -> 7×7×1024
    avg pool, fc num_classes          -> 4,231,976 parameters for 1000 classes (paper: 4.2 M)

v2 (Sandler et al. 2018, 3.5 M) and v3 small/large (Howard et al. 2019, 2.5 M / 5.5 M) subclass
torchvision's classes and keep their module names, so torchvision's checkpoints load.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision import models as tvm
from torchvision.models.mobilenetv3 import _mobilenet_v3_conf

from ..layers import conv_bn_act, depthwise_separable
from ._contract import IMAGENET_MEAN, IMAGENET_STD, Classifier, linear_head, pool_flat
from ._registry import register_model
from ._torchvision import FeaturesClassifier, resolution_groups

# (out_chans, stride) of the 13 depthwise separable blocks
MOBILENET_V1: list[tuple[int, int]] = [
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *[(512, 1)] * 5, (1024, 2), (1024, 1),
]  # fmt: skip


class MobileNetV1(Classifier):
    """MobileNet v1 with width multiplier ``width_mult`` (α in the paper)."""

    def __init__(
        self, *, num_classes: int = 1000, in_chans: int = 3, width_mult: float = 1.0, dropout: float = 1e-3
    ) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans, mean=IMAGENET_MEAN, std=IMAGENET_STD)
        c = int(32 * width_mult)
        layers: list[nn.Module] = [conv_bn_act(in_chans, c, 3, 2)]
        for out, stride in MOBILENET_V1:
            layers.append(depthwise_separable(c, int(out * width_mult), stride))
            c = int(out * width_mult)
        self.features = nn.Sequential(*layers)
        self.num_features = c
        self.drop = nn.Dropout(dropout)  # TF-slim's reference keeps 0.999
        self.fc = linear_head(c, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """x: Tensor[N, in_chans, H, W] -> Tensor[N, 1024·α, H/32, W/32]."""
        self.check_input(x)
        return self.features(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """x: Tensor[N, C, h, w] -> Tensor[N, C] pooled or Tensor[N, num_classes] logits."""
        x = self.drop(pool_flat(x))
        return x if pre_logits else self.fc(x)

    def group_matcher(self) -> dict[str, list[str]]:
        return {**resolution_groups("features", self.features), "head": ["fc"]}


class MobileNetV2(FeaturesClassifier, tvm.MobileNetV2):
    head_path, stem_path = "classifier.1", "features.0.0"

    def __init__(self, *, num_classes: int, in_chans: int, width_mult: float = 1.0, dropout: float = 0.2) -> None:
        tvm.MobileNetV2.__init__(self, num_classes=num_classes, width_mult=width_mult, dropout=dropout)
        self.init_contract(num_classes=num_classes, in_chans=in_chans)


class MobileNetV3(FeaturesClassifier, tvm.MobileNetV3):
    """torchvision's MobileNet v3; ``num_features`` is the 1024/1280-wide hidden FC layer the last Linear reads."""

    head_path, stem_path = "classifier.3", "features.0.0"

    def __init__(self, arch: str, *, num_classes: int, in_chans: int, dropout: float = 0.2) -> None:
        setting, last_channel = _mobilenet_v3_conf(arch)
        tvm.MobileNetV3.__init__(self, setting, last_channel, num_classes=num_classes, dropout=dropout)
        self.init_contract(num_classes=num_classes, in_chans=in_chans)


@register_model(family="MobileNet", paper="Howard et al. 2017, MobileNets (1.0-224)")
def mobilenet_v1(*, num_classes: int = 1000, in_chans: int = 3, width_mult: float = 1.0) -> MobileNetV1:
    """MobileNet v1 1.0-224: 13 depthwise separable blocks, 4.2 M parameters."""
    return MobileNetV1(num_classes=num_classes, in_chans=in_chans, width_mult=width_mult)


@register_model(family="MobileNet", paper="Sandler et al. 2018, MobileNetV2: Inverted Residuals and Linear Bottlenecks")
def mobilenet_v2(*, num_classes: int = 1000, in_chans: int = 3, width_mult: float = 1.0) -> MobileNetV2:
    """MobileNet v2 1.0: inverted residual blocks with linear bottlenecks, 3.5 M parameters."""
    return MobileNetV2(num_classes=num_classes, in_chans=in_chans, width_mult=width_mult)


@register_model(family="MobileNet", paper="Howard et al. 2019, Searching for MobileNetV3 (small)")
def mobilenet_v3_small(*, num_classes: int = 1000, in_chans: int = 3) -> MobileNetV3:
    """MobileNet v3 small: searched blocks with SE and hard-swish, 2.5 M parameters."""
    return MobileNetV3("mobilenet_v3_small", num_classes=num_classes, in_chans=in_chans)


@register_model(family="MobileNet", paper="Howard et al. 2019, Searching for MobileNetV3 (large)")
def mobilenet_v3_large(*, num_classes: int = 1000, in_chans: int = 3) -> MobileNetV3:
    """MobileNet v3 large: searched blocks with SE and hard-swish, 5.5 M parameters."""
    return MobileNetV3("mobilenet_v3_large", num_classes=num_classes, in_chans=in_chans)
