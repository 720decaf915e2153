"""ShuffleNet v2 ×1.0 (Ma et al. 2018), torchvision's class.

    conv1 24 3×3 /2, max 3×3 /2     -> 56×56×24 (224 input)
    stage2 4 units                  -> 28×28×116
    stage3 8 units                  -> 14×14×232
    stage4 4 units                  -> 7×7×464
    conv5 1×1 1024, avg pool, fc    -> 2,278,604 parameters for 1000 classes (2.3 M)

Module names are torchvision's, so its checkpoints load.
"""

from __future__ import annotations

from torch import Tensor
from torchvision import models as tvm

from ._registry import register_model
from ._torchvision import TorchvisionClassifier


class ShuffleNetV2(TorchvisionClassifier, tvm.ShuffleNetV2):
    head_path, stem_path = "fc", "conv1.0"

    def __init__(self, repeats: list[int], widths: list[int], *, num_classes: int, in_chans: int) -> None:
        tvm.ShuffleNetV2.__init__(self, repeats, widths, num_classes=num_classes)
        self.init_contract(num_classes=num_classes, in_chans=in_chans)

    def forward_features(self, x: Tensor) -> Tensor:
        """x: Tensor[N, in_chans, H, W] -> Tensor[N, 1024, H/32, W/32]."""
        self.check_input(x)
        x = self.maxpool(self.conv1(x))
        return self.conv5(self.stage4(self.stage3(self.stage2(x))))

    def group_matcher(self) -> dict[str, list[str]]:
        return {
            "stem": ["conv1"],
            "stage2": ["stage2"],
            "stage3": ["stage3"],
            "stage4": ["stage4", "conv5"],
            "head": ["fc"],
        }


@register_model(family="ShuffleNet", paper="Ma et al. 2018, ShuffleNet V2: Practical Guidelines for Efficient CNNs")
def shufflenet_v2_x1_0(*, num_classes: int = 1000, in_chans: int = 3) -> ShuffleNetV2:
    """ShuffleNet v2 ×1.0: channel split and shuffle units, 2.3 M parameters."""
    return ShuffleNetV2([4, 8, 4], [24, 116, 232, 464, 1024], num_classes=num_classes, in_chans=in_chans)
