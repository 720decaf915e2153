"""ResNets (He et al. 2016) and Wide ResNet-50-2 (Zagoruyko & Komodakis 2016), torchvision's classes.

    stem     conv 64 7×7 /2, BN, ReLU, max 3×3 /2      -> 56×56×64   (224 input)
    layer1   basic/bottleneck blocks, 64 wide          -> 56×56×(64 or 256)
    layer2   128 wide, first block /2                  -> 28×28
    layer3   256 wide, /2                              -> 14×14
    layer4   512 wide, /2                              -> 7×7×(512 or 2048)
    head     global average pool, fc num_classes

Parameters for 1000 classes: resnet18 11.7 M, resnet34 21.8 M, resnet50 25.6 M, resnet101 44.5 M,
resnet152 60.2 M, wide_resnet50_2 68.9 M. Module names are torchvision's, so its checkpoints load.
``senet.py`` reuses :class:`ResNet` with a squeeze-and-excitation bottleneck.
"""

from __future__ import annotations

from torch import Tensor
from torchvision import models as tvm
from torchvision.models.resnet import BasicBlock, Bottleneck

from ._registry import register_model
from ._torchvision import TorchvisionClassifier

PAPER = "He et al. 2016, Deep Residual Learning for Image Recognition"


class ResNet(TorchvisionClassifier, tvm.ResNet):
    """torchvision's ResNet under the contract.

    Args:
        block: ``BasicBlock``, ``Bottleneck`` or a subclass.
        layers: blocks per stage, e.g. ``[3, 4, 6, 3]``.
        num_classes: fc width.
        in_chans: input channels.
        width_per_group: bottleneck width (64; 128 for Wide ResNet-50-2).
    """

    head_path, stem_path = "fc", "conv1"

    def __init__(
        self, block: type, layers: list[int], *, num_classes: int, in_chans: int, width_per_group: int = 64
    ) -> None:
        tvm.ResNet.__init__(self, block, layers, num_classes=num_classes, width_per_group=width_per_group)
        self.init_contract(num_classes=num_classes, in_chans=in_chans)

    def forward_features(self, x: Tensor) -> Tensor:
        """x: Tensor[N, in_chans, H, W] -> Tensor[N, 512·expansion, H/32, W/32]."""
        self.check_input(x)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def group_matcher(self) -> dict[str, list[str]]:
        stages = {f"layer{i}": [f"layer{i}"] for i in range(1, 5)}
        return {"stem": ["conv1", "bn1"], **stages, "head": ["fc"]}


@register_model(family="ResNet", paper=PAPER)
def resnet18(*, num_classes: int = 1000, in_chans: int = 3) -> ResNet:
    """ResNet-18: basic blocks [2, 2, 2, 2], 11.7 M parameters."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes, in_chans=in_chans)


@register_model(family="ResNet", paper=PAPER)
def resnet34(*, num_classes: int = 1000, in_chans: int = 3) -> ResNet:
    """ResNet-34: basic blocks [3, 4, 6, 3], 21.8 M parameters."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes=num_classes, in_chans=in_chans)


@register_model(family="ResNet", paper=PAPER)
def resnet50(*, num_classes: int = 1000, in_chans: int = 3) -> ResNet:
    """ResNet-50: bottleneck blocks [3, 4, 6, 3], 25.6 M parameters."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes=num_classes, in_chans=in_chans)


@register_model(family="ResNet", paper=PAPER)
def resnet101(*, num_classes: int = 1000, in_chans: int = 3) -> ResNet:
    """ResNet-101: bottleneck blocks [3, 4, 23, 3], 44.5 M parameters."""
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes=num_classes, in_chans=in_chans)


@register_model(family="ResNet", paper=PAPER)
def resnet152(*, num_classes: int = 1000, in_chans: int = 3) -> ResNet:
    """ResNet-152: bottleneck blocks [3, 8, 36, 3], 60.2 M parameters."""
    return ResNet(Bottleneck, [3, 8, 36, 3], num_classes=num_classes, in_chans=in_chans)


@register_model(family="ResNet", paper="Zagoruyko & Komodakis 2016, Wide Residual Networks")
def wide_resnet50_2(*, num_classes: int = 1000, in_chans: int = 3) -> ResNet:
    """Wide ResNet-50-2: ResNet-50 with bottlenecks twice as wide, 68.9 M parameters."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes=num_classes, in_chans=in_chans, width_per_group=128)
