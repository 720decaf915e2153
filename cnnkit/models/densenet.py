"""DenseNet-121 (Huang et al. 2017), torchvision's class.

    conv0 64 7×7 /2, BN, ReLU, max 3×3 /2          -> 56×56×64 (224 input)
    denseblock1 (6 layers, growth 32), transition  -> 28×28×128
    denseblock2 (12), transition                   -> 14×14×256
    denseblock3 (24), transition                   -> 7×7×512
    denseblock4 (16), BN, ReLU                     -> 7×7×1024
    global average pool, classifier                -> 7,978,856 parameters for 1000 classes (8.0 M)

Module names are torchvision's (``features.denseblockI...``, ``classifier``), so its checkpoints load
(torchvision's own loader renames the old ``norm.1``-style keys of its released files first).
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision import models as tvm

from ._registry import register_model
from ._torchvision import FeaturesClassifier


class DenseNet(FeaturesClassifier, tvm.DenseNet):
    head_path, stem_path = "classifier", "features.conv0"

    def __init__(
        self, block_config: tuple[int, ...], *, num_classes: int, in_chans: int, growth_rate: int = 32, init: int = 64
    ) -> None:
        tvm.DenseNet.__init__(self, growth_rate, block_config, init, num_classes=num_classes)
        self.init_contract(num_classes=num_classes, in_chans=in_chans)

    def forward_features(self, x: Tensor) -> Tensor:
        """x: Tensor[N, in_chans, H, W] -> Tensor[N, 1024, H/32, W/32] after the final BN-ReLU."""
        return nn.functional.relu(super().forward_features(x))


@register_model(family="DenseNet", paper="Huang et al. 2017, Densely Connected Convolutional Networks")
def densenet121(*, num_classes: int = 1000, in_chans: int = 3) -> DenseNet:
    """DenseNet-121: dense blocks (6, 12, 24, 16), growth rate 32, 8.0 M parameters."""
    return DenseNet((6, 12, 24, 16), num_classes=num_classes, in_chans=in_chans)
