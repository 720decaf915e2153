"""Images with any number of objects, each with a class, a box and an exact mask, in memory, for segmentation.

``load_segmentation_data(cfg, seed)`` opens any label format that carries masks through
:func:`cnnkit.data.labels.open_box_dataset` (COCO JSON with polygon or RLE ``segmentation``, as the scene
generator writes it; YOLO polygon lines), decodes every image and every mask once at one size, and returns
train / val / test splits of :class:`SegmentationImages`. A mask is checked against its image: a polygon point
outside the image, an RLE of another size, a missing or an empty mask is one :class:`~cnnkit.data.labels.LabelError`
naming the file and the object, or with ``data.skip_bad`` the image is skipped and listed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import DataConfig
from ..data.boxes import _splits, scene_size
from ..data.datasets import DataSplits
from ..data.images import BadImageError, load_image
from ..data.labels import TOLERANCE, LabelError, LabelledImage, open_box_dataset
from ..detection.data import DetectionImages
from ..errors import CnnkitError

Target = dict[str, Tensor]  # {"boxes": [n, 4] xyxy pixels, "labels": int64 [n], "masks": uint8 [n, H, W] 0/1}


class SegmentationImages(DetectionImages):
    """:class:`~cnnkit.detection.data.DetectionImages` whose targets also hold ``masks`` uint8 Tensor[n_i, H, W]
    (1 inside the object) at the stored image's size."""

    def __init__(self, images: Tensor, targets: list[Target], ids: list[str]) -> None:
        super().__init__(images, targets, ids)
        h, w = images.shape[-2:]
        for t, src in zip(self.targets, targets):
            t["masks"] = src["masks"].to(torch.uint8).reshape(-1, h, w)

    def subset(self, idx: np.ndarray) -> SegmentationImages:
        t = torch.as_tensor(idx, dtype=torch.long).tolist()
        return SegmentationImages(self.images[t], [self.targets[i] for i in t], [self.ids[i] for i in t])

    def digest(self) -> str:
        """A content hash of the pixels, boxes, labels and masks, in order."""
        h = hashlib.blake2b(digest_size=16)
        h.update(super().digest().encode())
        for t in self.targets:
            h.update(t["masks"].numpy().tobytes())
        return h.hexdigest()


class MaskProblem(Exception):
    """A bad mask, before it is located in its label file: ``reason`` (what was found) and ``expected``."""

    def __init__(self, reason: str, expected: str) -> None:
        super().__init__(reason)
        self.reason, self.expected = reason, expected


def decode_mask(seg: Any, width: int, height: int) -> np.ndarray:
    """A COCO segmentation (polygons ``[[x, y, …], …]`` in pixels, an RLE dict, or a bool mask) -> bool [H, W].

    Raises:
        MaskProblem: no mask, a polygon with a non-number or a point outside the image, an RLE of another size or
            whose run lengths don't cover the image exactly, or an empty mask.
    """
    from pycocotools import mask as mask_utils

    if seg is None:
        raise MaskProblem("an object without a mask", "a segmentation (polygons or RLE)")
    if isinstance(seg, np.ndarray):
        mask = seg.astype(bool)
    elif isinstance(seg, list):
        try:
            polys = [np.asarray(p, dtype=np.float64) for p in seg]
        except (TypeError, ValueError):
            raise MaskProblem("a polygon with a non-number", "polygons [[x1, y1, x2, y2, …]] of numbers") from None
        if not polys or any(p.ndim != 1 or len(p) < 6 or len(p) % 2 for p in polys):
            raise MaskProblem("a polygon with fewer than 3 points", expected="polygons [[x1, y1, x2, y2, …]]")
        pts = np.concatenate([p.reshape(-1, 2) for p in polys])
        bad = (pts[:, 0] < -TOLERANCE) | (pts[:, 1] < -TOLERANCE) | (pts[:, 0] > width + TOLERANCE)
        bad |= pts[:, 1] > height + TOLERANCE
        if bad.any() or not np.isfinite(pts).all():
            x, y = pts[np.flatnonzero(bad | ~np.isfinite(pts).all(1))[0]]
            raise MaskProblem(f"polygon point ({x:g}, {y:g}) outside the {width}×{height} image",
                             expected="a polygon inside the image")  # fmt: skip
        rles = mask_utils.frPyObjects([p.tolist() for p in polys], height, width)
        mask = mask_utils.decode(mask_utils.merge(rles)).astype(bool)
    else:
        size = list(seg.get("size") or [])
        if size != [height, width]:
            raise MaskProblem(f"an RLE of size {size}", expected=f"an RLE of the image's size [{height}, {width}]")
        runs = rle_runs(seg.get("counts"))
        if runs is None or sum(runs) != height * width:  # pycocotools would decode the rest from unset memory
            found = "no run lengths" if runs is None else f"run lengths adding up to {sum(runs)} pixels"
            expected = f"RLE counts (run lengths, or COCO's compressed string) adding up to {height}×{width} pixels"
            raise MaskProblem(f"an RLE with {found}", expected=expected)
        rle = seg if isinstance(seg["counts"], (str, bytes)) else mask_utils.frPyObjects(seg, height, width)
        mask = mask_utils.decode(rle).astype(bool)
    if mask.shape != (height, width):
        raise MaskProblem(f"a mask of shape {mask.shape}", expected=f"a {height}×{width} mask")
    if not mask.any():
        raise MaskProblem("an empty mask", expected="a mask with at least one pixel inside the image")
    return mask


def rle_runs(counts: Any) -> list[int] | None:
    """An RLE's ``counts`` -> its run lengths: a list of whole numbers as it is, or COCO's compressed string decoded
    as pycocotools' ``rleFrString`` decodes it; None when ``counts`` is neither or holds a negative run."""
    if isinstance(counts, list):
        ok = all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts)
        return counts if ok else None
    if isinstance(counts, bytes):
        counts = counts.decode("ascii", errors="replace")
    if not isinstance(counts, str):
        return None
    runs: list[int] = []
    p = 0
    while p < len(counts):  # a run: 6-bit characters (from "0"), 5 bits each, low first; 0x20: more follow
        x = k = 0
        more = True
        while more:
            c = ord(counts[p]) - 48 if p < len(counts) else -1
            if not 0 <= c < 64:
                return None
            x |= (c & 0x1F) << 5 * k
            more, p, k = bool(c & 0x20), p + 1, k + 1
            if not more and c & 0x10:  # the sign bit of the last character
                x |= -1 << 5 * k
        runs.append(x + runs[-2] if len(runs) > 2 else x)  # from the third on: a difference from two runs back
        if runs[-1] < 0:
            return None
    return runs


def image_masks(im: LabelledImage, source: str) -> np.ndarray:
    """Every object's mask of one image, bool [n, H, W] at the image's own size.

    Raises:
        LabelError: for a bad mask, naming the label file and the annotation (see :func:`locate`).
    """
    masks = []
    for k, inst in enumerate(im.instances):
        try:
            masks.append(decode_mask(inst.segmentation, im.width, im.height))
        except MaskProblem as e:
            raise LabelError(*locate(source, im.path, k), e.reason, expected=e.expected) from None
    return np.stack(masks) if masks else np.zeros((0, im.height, im.width), dtype=bool)


def locate(source: str, image: Path, k: int) -> tuple[Path, str]:
    """(label file, entry) of the k-th object of ``image``: ``annotations[j]`` of the COCO file that lists the
    image (crowd regions are not objects: :func:`~cnnkit.data.labels.coco_objects`), else (``source``,
    ``"<image name> object k"``)."""
    import json

    from ..data.labels import _coco_image_dirs, _coco_split_files, coco_objects, find_image, read_label_text

    src = Path(source)
    files = [src] if src.suffix == ".json" else list(_coco_split_files(src).values()) if src.is_dir() else []
    for f in files:
        doc = json.loads(read_label_text(f))
        dirs, target = _coco_image_dirs(f), image.resolve()
        found = [(img.get("id"), find_image(str(img.get("file_name")), dirs)) for img in doc.get("images", [])]
        ids = [i for i, path in found if path is not None and path.resolve() == target]  # as the reader finds it
        is_object = coco_objects(doc.get("annotations") or [])
        anns = [j for j, a in enumerate(doc.get("annotations") or []) if a.get("image_id") in ids and is_object(a)]
        if len(ids) == 1 and k < len(anns):
            return f, f"annotations[{anns[k]}] (object {k} of {image.name})"
    return src, f"{image.name} object {k}"


def resize_masks(masks: np.ndarray, size: tuple[int, int]) -> Tensor:
    """bool [n, h, w] -> uint8 Tensor[n, H, W] (nearest neighbour)."""
    t = torch.from_numpy(masks.astype(np.uint8))
    if tuple(t.shape[-2:]) == tuple(size) or not len(t):
        return t.reshape(-1, *size) if not len(t) else t
    return F.interpolate(t[None].float(), size=size, mode="nearest")[0].to(torch.uint8)


def decode_images(images: list[LabelledImage], size: tuple[int, int], source: str, skip_bad: bool,
                  skipped: list[tuple[str, str]]) -> SegmentationImages:  # fmt: skip
    """Decode and resize every image and mask once; boxes scaled to the new size. Bad ones raise or are skipped."""
    pixels, targets, ids = [], [], []
    for im in images:
        try:
            masks = image_masks(im, source)
            pixels.append(load_image(im.path, 3, size))
        except (LabelError, BadImageError) as e:
            if not skip_bad:
                raise
            skipped.append((e.where if isinstance(e, LabelError) else e.path, e.reason))
            continue
        scale = torch.tensor([size[1] / im.width, size[0] / im.height] * 2, dtype=torch.float64)
        boxes = torch.tensor([inst.box for inst in im.instances], dtype=torch.float64).reshape(-1, 4) * scale
        targets.append({"boxes": boxes.float(), "labels": torch.tensor([i.label for i in im.instances]),
                        "masks": resize_masks(masks, size)})  # fmt: skip
        ids.append(str(im.path))
    stacked = torch.stack(pixels) if pixels else torch.zeros(0, 3, *size, dtype=torch.uint8)
    return SegmentationImages(stacked, targets, ids)


def load_segmentation_data(cfg: DataConfig, seed: int = 0) -> DataSplits:
    """Open ``cfg.name`` (COCO JSON with masks, or YOLO polygons) -> ``DataSplits`` of :class:`SegmentationImages`
    at one size (``data.image_size``, else the images' own shared size, else 128×128)."""
    if not Path(cfg.name).exists():
        raise CnnkitError(
            f"expected a dataset with instance masks (a COCO .json or folder with polygon/RLE segmentation), found"
            f" nothing at {cfg.name!r}; make one with `cnnkit data synth --format coco --objects-per-image 1..4`"
        )
    found = open_box_dataset(cfg.name, skip_bad=cfg.skip_bad)
    splits = _splits(found.splits, cfg, seed)
    size = scene_size(cfg, [im for items in splits.values() for im in items])
    skipped = list(found.skipped)
    data = {s: decode_images(items, size, found.source, cfg.skip_bad, skipped) for s, items in splits.items()}
    if len(data["train"]) == 0 and cfg.test_fraction < 1:  # 1: new data to evaluate on (see as_new_data)
        raise CnnkitError(f"expected images with masks for training in {found.source!r}, found none")
    hflip = cfg.hflip if cfg.hflip is not None else (found.hflip if found.hflip is not None else True)
    return DataSplits(**data, classes=found.classes, in_chans=3, image_size=size, source=found.source,
                      skipped=skipped, hflip=hflip)  # fmt: skip


class SegmentAugment:
    """Mask-aware augmentation of a uint8 batch: mirror (when the data allows it) moves pixels, boxes and masks
    together; colour jitter changes pixels only."""

    def __init__(self, hflip: bool, jitter: float = 0.3) -> None:
        import torchvision.transforms.v2 as v2

        self.hflip, self.jitter = hflip, v2.ColorJitter(jitter, jitter, jitter, 0.02)

    def __call__(self, x: Tensor, targets: list[Target]) -> tuple[Tensor, list[Target]]:
        """x: uint8 Tensor[B, C, H, W] and B targets -> the same, augmented (new tensors; inputs untouched)."""
        out_x, out_t, w = x.clone(), [], x.shape[-1]
        for i, t in enumerate(targets):
            img, t = self.jitter(x[i]), dict(t)
            if self.hflip and torch.rand(()) < 0.5:
                img, t["masks"] = img.flip(-1), t["masks"].flip(-1)
                t["boxes"] = torch.stack([w - t["boxes"][:, 2], t["boxes"][:, 1], w - t["boxes"][:, 0],
                                          t["boxes"][:, 3]], 1)  # fmt: skip
            out_x[i] = img
            out_t.append(t)
        return out_x, out_t
