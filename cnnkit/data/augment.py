"""Task-aware augmentation presets on ``torchvision.transforms.v2``.

The notes: augmentation must respect the task — a flipped "2" is no longer a 2, but a flipped coat is still
a coat. ``auto`` picks by the data: no flips where mirrored images change meaning (``data.hflip``, false for
digits); flips and crops for clothes; crops, flips and colour for photos. Presets act on one uint8 image
``Tensor[C, H, W]``; :class:`BatchAugment` applies one to every
image of a batch (each with its own random draw, from torch's global RNG, which checkpoints save).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision.transforms.v2 as v2
from torch import Tensor, nn

from ..errors import CnnkitError

NOT_MIRRORABLE = ("digits",)  # known datasets whose mirrored images show another thing or nothing
PRESETS = ("auto", "none", "digits", "clothes", "photos", "randaugment", "trivialaugment")


def auto_preset(dataset: str, hflip: bool | None = None) -> str:
    """The preset ``auto`` stands for on ``dataset`` (a name or a folder path): never one with flips when mirrored
    images would show another thing (``hflip`` false; by default, for the known handwriting datasets)."""
    if not (hflip if hflip is not None else dataset not in NOT_MIRRORABLE):
        return "digits"
    return "clothes" if dataset == "fashion-mnist" else "photos"


def preset(name: str, size: tuple[int, int], dataset: str = "", hflip: bool | None = None) -> nn.Module | None:
    """A v2 transform for one uint8 image Tensor[C, H, W] -> Tensor[C, H, W] of the same size; None for no-op."""
    if name not in PRESETS:
        raise CnnkitError(f"expected data.augment one of {', '.join(PRESETS)}, found {name!r}")
    name = auto_preset(dataset, hflip) if name == "auto" else name
    pad = max(1, round(min(size) / 14))  # 2 pixels at 28×28
    if name == "none":
        return None
    if name == "digits":  # small shifts and rotations, never flips
        return v2.RandomAffine(degrees=10, translate=(0.1, 0.1))
    if name == "clothes":  # v2.RandomCrop(size, padding=pad) + v2.RandomHorizontalFlip, done batch-wise
        return BatchCropFlip(pad)
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


class BatchCropFlip(nn.Module):
    """Random crop with zero padding and random horizontal flip, drawn independently for every image of a batch.

    The same distribution as ``v2.RandomCrop(size, padding=pad)`` followed by ``v2.RandomHorizontalFlip()``
    applied image by image, in a few tensor operations instead of a Python loop (the loop costs about as much
    as a small CNN's training step on a 2-core CPU).
    """

    batched = True

    def __init__(self, pad: int, flip: bool = True) -> None:
        super().__init__()
        self.pad, self.flip = pad, flip

    def forward(self, x: Tensor) -> Tensor:
        """x: uint8 Tensor[B, C, H, W] -> Tensor[B, C, H, W]."""
        b, _, h, w = x.shape
        padded = F.pad(x, (self.pad,) * 4)
        rows = torch.randint(0, 2 * self.pad + 1, (b, 1)) + torch.arange(h)  # [B, H]
        cols = torch.randint(0, 2 * self.pad + 1, (b, 1)) + torch.arange(w)  # [B, W]
        if self.flip:
            cols = torch.where(torch.rand(b, 1) < 0.5, cols.flip(1), cols)
        out = padded[torch.arange(b)[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # [B, H, W, C]
        return out.permute(0, 3, 1, 2).contiguous()


class BatchAugment:
    """Apply a transform to a uint8 batch Tensor[B, C, H, W]: batch-wise when it can, else image by image."""

    def __init__(self, transform: nn.Module | None) -> None:
        self.transform = transform

    def __call__(self, x: Tensor) -> Tensor:
        if self.transform is None:
            return x
        if getattr(self.transform, "batched", False):
            return self.transform(x)
        return torch.stack([self.transform(img) for img in x])
