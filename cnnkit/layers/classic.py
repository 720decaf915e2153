"""Blocks of the pre-BatchNorm ImageNet networks (AlexNet, ZFNet, VGG-A-LRN, Network in Network)."""

from __future__ import annotations

from torch import nn


def lrn(size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0) -> nn.LocalResponseNorm:
    """Local response normalisation across channels with AlexNet's constants (n=5, α=1e-4, β=0.75, k=2).

    The paper divides by ``(k + α Σ a²)^β``; PyTorch divides by ``(k + α/n Σ a²)^β``, so ``α`` is
    multiplied by ``n`` here to give the paper's layer. Shapes: Tensor[N, C, H, W] -> the same.
    """
    return nn.LocalResponseNorm(size, alpha=alpha * size, beta=beta, k=k)


def conv_relu(in_chans: int, out_chans: int, kernel_size: int, stride: int = 1, padding: int = 0) -> list[nn.Module]:
    """Conv (with bias) followed by an in-place ReLU, as two layers to splice into an ``nn.Sequential``.

    Shapes: Tensor[N, in_chans, H, W] -> Tensor[N, out_chans, (H + 2·padding − kernel_size)/stride + 1, ...].
    """
    return [nn.Conv2d(in_chans, out_chans, kernel_size, stride, padding), nn.ReLU(inplace=True)]
