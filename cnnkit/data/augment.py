"""Task-aware augmentation presets on ``torchvision.transforms.v2``.

The notes: augmentation must respect the task — a flipped "2" is no longer a 2, but a flipped coat is still
a coat. ``auto`` picks by dataset: no flips for digits; flips and crops for clothes; crops, flips and colour
for photos. Presets act on one uint8 image ``Tensor[C, H, W]``; :class:`BatchAugment` applies one to every
image of a batch (each with its own random draw, from torch's global RNG, which checkpoints save).
"""

from __future__ import annotations

import torch
import torchvision.transforms.v2 as v2
from torch import Tensor, nn

from ..errors import CnnkitError

PRESETS = ("auto", "none", "digits", "clothes", "photos", "randaugment", "trivialaugment")


def auto_preset(dataset: str) -> str:
    """The preset ``auto`` stands for on ``dataset`` (a name or a folder path)."""
    return {"digits": "digits", "fashion-mnist": "clothes"}.get(dataset, "photos")


def preset(name: str, size: tuple[int, int], dataset: str = "") -> nn.Module | None:
    """A v2 transform for one uint8 image Tensor[C, H, W] -> Tensor[C, H, W] of the same size; None for no-op."""
    if name not in PRESETS:
        raise CnnkitError(f"expected data.augment one of {', '.join(PRESETS)}, found {name!r}")
    name = auto_preset(dataset) if name == "auto" else name
    pad = max(1, round(min(size) / 14))  # 2 pixels at 28×28
    if name == "none":
        return None
    if name == "digits":  # small shifts and rotations, never flips
        return v2.RandomAffine(degrees=10, translate=(0.1, 0.1))
    if name == "clothes":
        return v2.Compose([v2.RandomCrop(size, padding=pad), v2.RandomHorizontalFlip()])
    if name == "photos":
        return v2.Compose(
            [
                v2.RandomResizedCrop(size, scale=(0.5, 1.0), antialias=True),
                v2.RandomHorizontalFlip(),
                v2.ColorJitter(0.2, 0.2, 0.2),
            ]
        )
    policy = v2.RandAugment() if name == "randaugment" else v2.TrivialAugmentWide()
    return v2.Compose([v2.RandomCrop(size, padding=pad), v2.RandomHorizontalFlip(), policy])


class BatchAugment:
    """Apply a per-image transform to each image of a uint8 batch Tensor[B, C, H, W]."""

    def __init__(self, transform: nn.Module | None) -> None:
        self.transform = transform

    def __call__(self, x: Tensor) -> Tensor:
        if self.transform is None:
            return x
        return torch.stack([self.transform(img) for img in x])
