"""Images with any number of labelled boxes each (none included), in memory, for detection.

``load_detection_data(cfg, seed)`` opens any label format :func:`cnnkit.data.labels.open_box_dataset` reads (YOLO
``data.yaml``, COCO JSON, Pascal VOC, CSV), decodes every image once at one size, and returns train / val / test
splits of :class:`DetectionImages`. Boxes are ``xyxy`` in the pixels of the resized image, as torchvision's
detectors and ``torchvision.ops`` take them. An image with an empty label file is a negative: no boxes.

:class:`DetectAugment` is the box-aware augmentation (``transforms.v2`` with ``tv_tensors.BoundingBoxes``):
scale and shift, mirroring only when the data allows it, colour jitter; boxes cut to nothing are dropped
(``v2.SanitizeBoundingBoxes``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2 as v2
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors

from ..config import DataConfig
from ..data.boxes import _splits, scene_size
from ..data.datasets import DataSplits
from ..data.images import BadImageError, load_image
from ..data.labels import LabelledImage, open_box_dataset
from ..errors import CnnkitError

Target = dict[str, Tensor]  # {"boxes": Tensor[n, 4] xyxy pixels, "labels": int64 Tensor[n]}


class DetectionImages(Dataset):
    """``images`` uint8 Tensor[N, C, H, W]; ``targets`` one dict per image: ``boxes`` float Tensor[n_i, 4] ``xyxy``
    in pixels of the stored image, ``labels`` int64 Tensor[n_i] (n_i may be 0); ``ids`` the image paths."""

    def __init__(self, images: Tensor, targets: list[Target], ids: list[str]) -> None:
        if not (len(images) == len(targets) == len(ids)):
            raise ValueError(f"expected as many targets and ids as images, found {len(images)} images")
        self.images, self.ids = images, list(ids)
        self.targets = [{"boxes": t["boxes"].float().reshape(-1, 4), "labels": t["labels"].long()} for t in targets]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Tensor, Target]:
        return self.images[i], self.targets[i]

    def take(self, idx: Tensor) -> tuple[Tensor, list[Target]]:
        """Examples ``idx`` Tensor[B] -> (images Tensor[B, C, H, W], B target dicts)."""
        return self.images[idx], [self.targets[i] for i in idx.tolist()]

    def subset(self, idx: np.ndarray) -> DetectionImages:
        t = torch.as_tensor(idx, dtype=torch.long)
        return DetectionImages(self.images[t], [self.targets[i] for i in t.tolist()], [self.ids[i] for i in t.tolist()])

    def all_boxes(self) -> Tensor:
        """Every box of every image, Tensor[M, 4] ``xyxy`` pixels."""
        return torch.cat([t["boxes"] for t in self.targets]) if self.targets else torch.zeros(0, 4)

    def digest(self) -> str:
        """A content hash of the pixels, boxes and labels, in order."""
        h = hashlib.blake2b(digest_size=16)
        h.update(self.images.numpy().tobytes())
        for t in self.targets:
            h.update(t["boxes"].numpy().tobytes())
            h.update(t["labels"].numpy().tobytes())
        return h.hexdigest()


def decode_images(images: list[LabelledImage], size: tuple[int, int], skip_bad: bool, skipped: list) -> DetectionImages:
    """Decode and resize every image once; boxes scaled to the new size. Bad images raise, or are skipped."""
    pixels, targets, ids = [], [], []
    for im in images:
        try:
            pixels.append(load_image(im.path, 3, size))
        except BadImageError as e:
            if not skip_bad:
                raise
            skipped.append((e.path, e.reason))
            continue
        scale = torch.tensor([size[1] / im.width, size[0] / im.height] * 2, dtype=torch.float64)
        boxes = torch.tensor([inst.box for inst in im.instances], dtype=torch.float64).reshape(-1, 4) * scale
        targets.append({"boxes": boxes.float(), "labels": torch.tensor([i.label for i in im.instances])})
        ids.append(str(im.path))
    stacked = torch.stack(pixels) if pixels else torch.zeros(0, 3, *size, dtype=torch.uint8)
    return DetectionImages(stacked, targets, ids)


def load_detection_data(cfg: DataConfig, seed: int = 0) -> DataSplits:
    """Open ``cfg.name`` (any label format, any number of objects per image) -> ``DataSplits`` of
    :class:`DetectionImages` at one size (``data.image_size``, else the images' own shared size, else 128×128)."""
    if not Path(cfg.name).exists():
        raise CnnkitError(
            f"expected a labelled box dataset (a YOLO data.yaml, a COCO .json, a Pascal VOC folder or a .csv), found"
            f" nothing at {cfg.name!r}; make one with `cnnkit data synth --objects-per-image 1..6`"
        )
    found = open_box_dataset(cfg.name, skip_bad=cfg.skip_bad)
    splits = _splits(found.splits, cfg, seed)
    size = scene_size(cfg, [im for items in splits.values() for im in items])
    skipped = list(found.skipped)
    data = {s: decode_images(items, size, cfg.skip_bad, skipped) for s, items in splits.items()}
    if len(data["train"]) == 0 and cfg.test_fraction < 1:  # 1: new data to evaluate on (see as_new_data)
        raise CnnkitError(f"expected labelled training images in {found.source!r}, found none")
    hflip = cfg.hflip if cfg.hflip is not None else (found.hflip if found.hflip is not None else True)
    return DataSplits(**data, classes=found.classes, in_chans=3, image_size=size, source=found.source,
                      skipped=skipped, hflip=hflip)  # fmt: skip


class DetectAugment:
    """Box-aware augmentation of a uint8 batch, image by image: scale and shift (``v2.RandomAffine``), mirror when
    the data allows it, colour jitter; boxes move with the pixels, are clipped to the image, and those cut to less
    than ``min_size`` pixels are dropped with their labels."""

    def __init__(self, size: tuple[int, int], hflip: bool, scale: tuple[float, float] = (0.75, 1.25),
                 min_size: float = 2.0) -> None:  # fmt: skip
        steps = [v2.RandomAffine(degrees=0, translate=(0.1, 0.1), scale=scale)]
        steps += [v2.RandomHorizontalFlip()] if hflip else []
        steps += [v2.ColorJitter(0.3, 0.3, 0.3, 0.02), v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(min_size)]
        self.transform, self.size = v2.Compose(steps), size

    def __call__(self, x: Tensor, targets: list[Target]) -> tuple[Tensor, list[Target]]:
        """x: uint8 Tensor[B, C, H, W] and B targets -> the same, augmented (new tensors; inputs untouched)."""
        out_x, out_t = x.clone(), []
        for i, t in enumerate(targets):
            boxes = tv_tensors.BoundingBoxes(t["boxes"], format="XYXY", canvas_size=self.size)
            sample = self.transform({"image": tv_tensors.Image(x[i]), "boxes": boxes, "labels": t["labels"]})
            out_x[i] = sample["image"].as_subclass(Tensor)
            out_t.append({"boxes": sample["boxes"].as_subclass(Tensor).float(), "labels": sample["labels"]})
        return out_x, out_t
