"""LeNet-5 (LeCun et al. 1998), adapted to 28×28 input by zero padding of 2 on C1.

Layer by layer for a 1×28×28 input (pad 2 makes C1 see the paper's 32×32)::

    C1  conv 6@5×5, pad 2   -> 6×28×28     156 params
    S2  avg pool 2×2        -> 6×14×14
    C3  conv 16@5×5         -> 16×10×10   2,416 params (full connection table, not the paper's sparse one)
    S4  avg pool 2×2        -> 16×5×5
    C5  conv 120@5×5        -> 120×1×1   48,120 params
    F6  fc 84                            10,164 params
    out fc num_classes                      850 params (10 classes)  -> 61,706 in all (~60k, as in the notes)

Activations are tanh, as in the paper. The fully connected sizes are fixed, so the input must be 28×28.
"""

from __future__ import annotations

from torch import Tensor, nn

from ._contract import Classifier, linear_head
from ._fixed import FixedInput
from ._registry import register_model


class LeNet5(FixedInput, Classifier):
    default_input = (1, 28, 28)
    arch = "lenet5"

    def __init__(self, *, num_classes: int = 10, in_chans: int = 1) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans, mean=(0.5,), std=(0.5,))
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 6, 5, padding=2),  # C1: 28 + 2·2 − 5 + 1 = 28
            nn.Tanh(),
            nn.AvgPool2d(2),  # S2: 14
            nn.Conv2d(6, 16, 5),  # C3: 14 − 5 + 1 = 10
            nn.Tanh(),
            nn.AvgPool2d(2),  # S4: 5
            nn.Conv2d(16, 120, 5),  # C5: 5 − 5 + 1 = 1
            nn.Tanh(),
        )
        self.pre_logits = nn.Sequential(nn.Flatten(), nn.Linear(120, 84), nn.Tanh())  # F6
        self.num_features = 84
        self.fc = linear_head(84, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """x: Tensor[N, in_chans, 28, 28] -> Tensor[N, 120, 1, 1] (C5)."""
        self.check_input(x)
        return self.features(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """x: Tensor[N, 120, 1, 1] -> Tensor[N, 84] (F6) or Tensor[N, num_classes]."""
        x = self.pre_logits(x)
        return x if pre_logits else self.fc(x)

    def group_matcher(self) -> dict[str, list[str]]:
        return {
            "stem": ["features.0"],
            "stage1": ["features.3"],
            "stage2": ["features.6"],
            "head": ["pre_logits", "fc"],
        }


@register_model(family="LeNet", paper="LeCun et al. 1998, Gradient-based learning", default_input=(1, 28, 28))
def lenet5(*, num_classes: int = 10, in_chans: int = 1) -> LeNet5:
    """LeNet-5 with tanh and average pooling, ~61.7k parameters for 10 classes."""
    return LeNet5(num_classes=num_classes, in_chans=in_chans)
