"""Images with one labelled box each, in memory, for classification + localisation.

``load_box_data(cfg, seed, one_object=True)`` opens any of the label formats :mod:`cnnkit.data.labels` reads
(YOLO ``data.yaml``, COCO JSON, Pascal VOC, CSV), decodes every image once (resized to one size), and returns
train / val / test splits of :class:`BoxImages`. Boxes are stored as the notes write them: ``(P_x, P_y, w,
h)``, the centre, width and height normalised to the image, so resizing never changes them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.ops import box_convert
from tqdm.auto import tqdm

from ..config import DataConfig
from ..errors import CnnkitError
from .datasets import DataSplits, split_indices
from .images import BadImageError, load_image
from .labels import LabelError, LabelledImage, open_box_dataset


class BoxImages(Dataset):
    """``images`` uint8 Tensor[N, C, H, W], ``labels`` int64 Tensor[N], ``boxes`` float Tensor[N, 4] in
    normalised ``cxcywh``, ``ids`` the image paths."""

    def __init__(self, images: Tensor, labels: Tensor, boxes: Tensor, ids: list[str]) -> None:
        if not (len(images) == len(labels) == len(boxes) == len(ids)):
            raise ValueError(f"expected as many labels, boxes and ids as images, found {len(images)} images")
        self.images, self.labels, self.boxes, self.ids = images, labels.long(), boxes.float(), list(ids)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, dict[str, Tensor]]:
        return self.images[i], {"labels": self.labels[i], "boxes": self.boxes[i]}

    def take(self, idx: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Examples ``idx`` Tensor[B] -> (images Tensor[B, C, H, W], {"labels": [B], "boxes": [B, 4]})."""
        return self.images[idx], {"labels": self.labels[idx], "boxes": self.boxes[idx]}

    def subset(self, idx: np.ndarray) -> BoxImages:
        t = torch.as_tensor(idx, dtype=torch.long)
        return BoxImages(self.images[t], self.labels[t], self.boxes[t], [self.ids[i] for i in t.tolist()])

    def digest(self) -> str:
        h = hashlib.blake2b(digest_size=16)
        for t in (self.images, self.labels, self.boxes):
            h.update(t.numpy().tobytes())
        return h.hexdigest()


def pixel_boxes(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Normalised ``cxcywh`` Tensor[N, 4] -> ``xyxy`` pixels Tensor[N, 4] for an image of ``size`` (H, W)."""
    h, w = size
    return box_convert(boxes, "cxcywh", "xyxy") * torch.tensor([w, h, w, h], dtype=boxes.dtype)


def normalised_boxes(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """``xyxy`` pixels Tensor[N, 4] -> normalised ``cxcywh`` Tensor[N, 4] (the inverse of :func:`pixel_boxes`)."""
    h, w = size
    return box_convert(boxes / torch.tensor([w, h, w, h], dtype=boxes.dtype), "xyxy", "cxcywh")


def _one_object(im: LabelledImage, one_object: bool) -> None:
    if one_object and len(im.instances) != 1:
        raise LabelError(
            im.path, None, f"{len(im.instances)} objects", expected="exactly one labelled object per image for"
            " localisation (use --task detect for several)",
        )  # fmt: skip


def decode(images: list[LabelledImage], size: tuple[int, int], skip_bad: bool, skipped: list, one_object: bool,
           desc: str) -> BoxImages:  # fmt: skip
    """Decode and resize every image once; bad images and labels raise, or are skipped and listed."""
    pixels, labels, boxes, ids = [], [], [], []
    for im in tqdm(images, desc=desc, unit="img", leave=False, disable=len(images) < 500):
        try:
            _one_object(im, one_object)
            pixels.append(load_image(im.path, 3, size))
        except (LabelError, BadImageError) as e:
            if not skip_bad:
                raise
            skipped.append((getattr(e, "where", None) or e.path, e.reason))
            continue
        inst = im.instances[0]
        labels.append(inst.label)
        boxes.append(normalised_boxes(torch.tensor([inst.box], dtype=torch.float64), (im.height, im.width))[0])
        ids.append(str(im.path))
    if not pixels:
        return BoxImages(torch.zeros(0, 3, *size, dtype=torch.uint8), torch.zeros(0), torch.zeros(0, 4), [])
    return BoxImages(torch.stack(pixels), torch.tensor(labels), torch.stack(boxes).float(), ids)


def scene_size(cfg: DataConfig, images: list[LabelledImage]) -> tuple[int, int]:
    """``data.image_size`` when set, else the images' own size when they all share one, else 128×128."""
    if cfg.image_size:
        return (cfg.image_size, cfg.image_size)
    sizes = {(im.height, im.width) for im in images}
    return sizes.pop() if len(sizes) == 1 else (128, 128)


def _splits(found: dict[str, list[LabelledImage]], cfg: DataConfig, seed: int) -> dict[str, list[LabelledImage]]:
    """train / val / test lists: the source's own splits, else seeded, stratified carving by the fractions."""
    out = dict(found)
    for source, target, fraction in (("all", "test", cfg.test_fraction), (None, "val", cfg.val_fraction)):
        source = source or ("train" if "train" in out else "all")
        if target in out or source not in out:
            continue
        items = out.pop(source)
        labels = np.array([im.instances[0].label if im.instances else -1 for im in items]) + 1
        keep, held = split_indices(labels, fraction, seed)
        out["train"], out[target] = [items[i] for i in keep], [items[i] for i in held]
    return {s: out.get(s, []) for s in ("train", "val", "test")}


def load_box_data(cfg: DataConfig, seed: int = 0, one_object: bool = True) -> DataSplits:
    """Open ``cfg.name`` (any label format) -> :class:`DataSplits` of :class:`BoxImages`."""
    if not Path(cfg.name).exists():
        raise CnnkitError(
            f"expected a labelled box dataset (a YOLO data.yaml, a COCO .json, a Pascal VOC folder or a .csv), found"
            f" nothing at {cfg.name!r}; make one with `cnnkit data synth`"
        )
    found = open_box_dataset(cfg.name, skip_bad=cfg.skip_bad)
    splits = _splits(found.splits, cfg, seed)
    size = scene_size(cfg, [im for items in splits.values() for im in items])
    skipped = list(found.skipped)
    data = {s: decode(items, size, cfg.skip_bad, skipped, one_object, f"reading {s}") for s, items in splits.items()}
    if len(data["train"]) == 0 and cfg.test_fraction < 1:  # 1: new data to evaluate on (see as_new_data)
        raise CnnkitError(f"expected labelled training images in {found.source!r}, found none")
    hflip = cfg.hflip if cfg.hflip is not None else (found.hflip if found.hflip is not None else True)
    return DataSplits(**data, classes=found.classes, in_chans=3, image_size=size, source=found.source,
                      skipped=skipped, hflip=hflip)  # fmt: skip
