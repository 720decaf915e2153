"""Squeeze-and-excitation (Hu et al. 2018): channel gates from globally pooled features."""

from __future__ import annotations

from torchvision.ops import SqueezeExcitation


def SqueezeExcite(channels: int, reduction: int = 16) -> SqueezeExcitation:
    """Global average pool -> FC (C -> C/r) -> ReLU -> FC (C/r -> C) -> sigmoid, then scale the input:
    torchvision's ``SqueezeExcitation`` (its ``fc1``/``fc2`` are 1×1 convolutions, the same parameters as
    ``nn.Linear``). Shapes: Tensor[N, C, H, W] -> Tensor[N, C, H, W]."""
    return SqueezeExcitation(channels, max(1, channels // reduction))
