"""Squeeze-and-excitation (Hu et al. 2018): channel gates from globally pooled features."""

from __future__ import annotations

from torch import Tensor, nn


class SqueezeExcite(nn.Module):
    """Global average pool -> FC (C -> C/r) -> ReLU -> FC (C/r -> C) -> sigmoid, then scale the input.

    The two FC layers are 1×1 convolutions on the pooled map (same parameters as ``nn.Linear``).
    Shapes: Tensor[N, C, H, W] -> Tensor[N, C, H, W].
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        s = x.mean((2, 3), keepdim=True)  # [N, C, 1, 1]
        s = self.fc2(nn.functional.relu(self.fc1(s), inplace=True))
        return x * s.sigmoid()
