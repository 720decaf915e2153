"""Object crops and background windows cut from a box dataset: the class folders a window classifier trains on.

:func:`write_crops` cuts each labelled object out of its image as a square around the box centre (side = the box's
longer side × ``margin``, at most the image's shorter side, shifted to lie inside the image), resizes it to
``size``×``size`` and writes ``OUT/<split>/<class>/*.png``. A ``background`` class holds random square windows whose
IoU with every box of their image is below ``max_iou``, their sides drawn from the object windows of the same split,
``background_ratio`` times as many as the split's objects. That is the layout ``cnnkit train --data OUT`` reads; a
source without splits gives ``OUT/<class>/``. ``OUT/crops.csv`` records every window (split, class, file, source
image, ``x1 y1 x2 y2`` in its pixels). Crops keep the source's colour: grayscale images give grayscale crops.

The windows come from the labels alone (image sizes and boxes), so they are planned first and each image is decoded
once. Boxes are snapped to 1/1000 pixel before: formats carry the same box to different precision (YOLO's six
normalised decimals), and a YOLO and a COCO copy of the same scenes give the same crops. The same seed gives
byte-identical files.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.ops import box_iou
from tqdm.auto import tqdm

from ..errors import CnnkitError
from ..io import atomic_write
from .images import GRAY_MODES, read_image, to_mode
from .labels import SPLITS, BoxDataset, LabelledImage, open_box_dataset
from .synth import prepare_out

BACKGROUND = "background"
MARGIN = 1.2  # an object's window side: its box's longer side times this
MAX_IOU = 0.1  # a background window's IoU with every box of its image stays below this
MANIFEST = "crops.csv"
MANIFEST_COLUMNS = ("split", "class", "file", "source", "x1", "y1", "x2", "y2")
SNAP = 1000  # boxes are rounded to 1/SNAP pixel before any window is placed
TRIES = 50  # random windows drawn per background crop wanted before giving up on the rest

Window = tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels, x2 - x1 == y2 - y1


@dataclass(frozen=True)
class Crop:
    """One window to cut: its split and class folder, the source image (index into the split) and the file."""

    split: str
    label: str  # a class name, or BACKGROUND
    image: int  # index of the source image in ``BoxDataset.splits[split]``
    window: Window
    file: str  # path relative to the output folder


@dataclass
class CropSet:
    """What :func:`write_crops` wrote: folder names (dataset classes, then background), every crop, the source
    images per split, how many background windows each split wanted, and the output folder."""

    classes: list[str]
    crops: list[Crop]
    sources: dict[str, list[Path]]
    background_wanted: dict[str, int]
    out: Path

    def counts(self) -> dict[str, Counter[str]]:
        """Crops per class folder, per split (splits in source order)."""
        out: dict[str, Counter[str]] = {split: Counter() for split in self.sources}
        for c in self.crops:
            out[c.split][c.label] += 1
        return out

    def folder(self, split: str) -> Path:
        """Where a split's class folders are: ``OUT/<split>``, or ``OUT`` for a source without splits."""
        return self.out if split == "all" else self.out / split


# --- planning -----------------------------------------------------------------------------------------------------


def square_window(cx: float, cy: float, side: float, width: int, height: int) -> Window:
    """The square of ``side`` pixels (rounded; at least 1, at most the image's shorter side) centred on (cx, cy),
    shifted to lie inside a ``width``×``height`` image."""
    s = int(min(max(1, math.floor(side + 0.5)), width, height))
    x1 = min(max(0, math.floor(cx - s / 2 + 0.5)), width - s)
    y1 = min(max(0, math.floor(cy - s / 2 + 0.5)), height - s)
    return x1, y1, x1 + s, y1 + s


def snapped(box: Sequence[float]) -> tuple[float, float, float, float]:
    """``xyxy`` rounded to 1/:data:`SNAP` pixel, so formats of different precision give the same windows."""
    x1, y1, x2, y2 = (round(float(v) * SNAP) / SNAP for v in box)
    return x1, y1, x2, y2


def object_windows(im: LabelledImage, margin: float) -> list[Window]:
    """One square window per object of ``im``: centred on its box, side = the box's longer side × ``margin``."""
    out = []
    for inst in im.instances:
        x1, y1, x2, y2 = snapped(inst.box)
        out.append(square_window((x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * margin, im.width, im.height))
    return out


def background_windows(
    rng: np.random.Generator, images: Sequence[LabelledImage], sides: Sequence[int], count: int, max_iou: float
) -> list[tuple[int, Window]]:
    """Up to ``count`` (image index, window) pairs: a random image, a side drawn from ``sides``, a random position;
    kept when its IoU with every box of that image is below ``max_iou``. Gives up after ``TRIES × count`` draws."""
    boxes = [torch.tensor([snapped(i.box) for i in im.instances], dtype=torch.float64).reshape(-1, 4) for im in images]
    found: list[tuple[int, Window]] = []
    for _ in range(TRIES * count if sides and images else 0):
        if len(found) == count:
            break
        k = int(rng.integers(len(images)))
        im, side = images[k], int(sides[int(rng.integers(len(sides)))])
        s = min(side, im.width, im.height)
        x1, y1 = int(rng.integers(im.width - s + 1)), int(rng.integers(im.height - s + 1))
        window = (x1, y1, x1 + s, y1 + s)
        if len(boxes[k]) == 0 or box_iou(torch.tensor([window], dtype=torch.float64), boxes[k]).max() < max_iou:
            found.append((k, window))
    return found


def plan_crops(
    data: BoxDataset, *, background_ratio: float = 1.0, margin: float = MARGIN, max_iou: float = MAX_IOU, seed: int = 0
) -> tuple[list[Crop], dict[str, int]]:
    """Every window to cut, from the labels alone -> (crops, background windows wanted per split).

    Files: ``<split>/<class>/<image>_<object>.png`` (image = index in the split, object = index in the image) and
    ``<split>/background/<image>_<n>.png``; without the ``<split>/`` part for a source without splits.
    """
    crops, wanted = [], {}
    for split, images in data.splits.items():
        prefix = "" if split == "all" else f"{split}/"
        sides = []
        for i, im in enumerate(images):
            for j, (inst, w) in enumerate(zip(im.instances, object_windows(im, margin))):
                name = data.classes[inst.label]
                crops.append(Crop(split, name, i, w, f"{prefix}{name}/{i:06d}_{j:02d}.png"))
                sides.append(w[2] - w[0])
        wanted[split] = round(background_ratio * len(sides))
        rng = np.random.default_rng([seed, [*SPLITS, "all"].index(split)])
        per_image: Counter[int] = Counter()
        for i, w in sorted(background_windows(rng, images, sides, wanted[split], max_iou)):
            crops.append(Crop(split, BACKGROUND, i, w, f"{prefix}{BACKGROUND}/{i:06d}_{per_image[i]:02d}.png"))
            per_image[i] += 1
    return crops, wanted


# --- checks -------------------------------------------------------------------------------------------------------


def check_options(size: int, background_ratio: float, margin: float, max_iou: float, seed: int) -> None:
    """Refuse an option :func:`write_crops` can't use, in one line."""
    if size < 1 or not 0 <= background_ratio < math.inf or not 0 < margin < math.inf or not 0 < max_iou <= 1:
        raise CnnkitError(
            f"expected --size >= 1, --background-ratio >= 0, a margin > 0 and 0 < max IoU <= 1, found size {size},"
            f" background ratio {background_ratio}, margin {margin}, max IoU {max_iou}; fix the option"
        )
    if seed < 0:
        raise CnnkitError(f"expected a seed >= 0, found {seed}; pass --seed 0 or more")


def _check_dataset(data: BoxDataset) -> None:
    """Refuse a dataset without boxes, or with a class that can't be a class folder next to ``background``."""
    if not any(im.instances for images in data.splits.values() for im in images):
        n = sum(len(v) for v in data.splits.values())
        raise CnnkitError(
            f"expected labelled objects in {data.source!r}, found {n} images and no boxes; label some objects or"
            " pick another dataset"
        )
    for name in data.classes:
        if name.lower() == BACKGROUND or name in (*SPLITS, "", ".", "..") or name.startswith(".") or "/" in name:
            raise CnnkitError(
                f"expected class names that can be folders next to {BACKGROUND!r}, found {name!r} in"
                f" {data.source!r}; rename the class"
            )


# --- writing ------------------------------------------------------------------------------------------------------


def _cut(im: Image.Image, window: Window, size: int) -> Image.Image:
    return im.crop(window).resize((size, size), Image.Resampling.BILINEAR)


def _write_manifest(out: Path, crops: Sequence[Crop], sources: dict[str, list[Path]]) -> Path:
    rows = [list(MANIFEST_COLUMNS)]
    rows += [[c.split, c.label, c.file, str(sources[c.split][c.image]), *map(str, c.window)] for c in crops]

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
            csv.writer(f).writerows(rows)

    return atomic_write(out / MANIFEST, write)


def write_crops(
    data: str | Path | BoxDataset,
    out: str | Path,
    *,
    size: int = 28,
    background_ratio: float = 1.0,
    margin: float = MARGIN,
    max_iou: float = MAX_IOU,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> CropSet:
    """Write a class-folder dataset of object crops and background windows cut from a box dataset.

    Args:
        data: a :class:`BoxDataset`, or any path :func:`~cnnkit.data.labels.open_box_dataset` opens.
        out: the folder to write (new or empty).
        size: side of every crop in pixels.
        background_ratio: background windows per object crop, in each split.
        margin: an object's window side as a multiple of its box's longer side.
        max_iou: a background window's IoU with every box of its image stays below this.
        seed: the same seed gives the same background windows, hence byte-identical files.
        overwrite: write into a non-empty ``out``, replacing what a previous :func:`write_crops` wrote there.
        progress: show a progress bar (for more than a few hundred images).

    Returns:
        A :class:`CropSet`: every crop with its window (``xyxy`` in the source image's pixels) and file.

    Raises:
        CnnkitError: for a bad option, a dataset without boxes, a class name that can't be a folder, or a
            non-empty ``out`` without ``overwrite``.
    """
    check_options(size, background_ratio, margin, max_iou, seed)
    data = data if isinstance(data, BoxDataset) else open_box_dataset(data)
    _check_dataset(data)
    crops, wanted = plan_crops(data, background_ratio=background_ratio, margin=margin, max_iou=max_iou, seed=seed)
    out = prepare_out(out, overwrite, layout=(*SPLITS, MANIFEST, BACKGROUND, *data.classes))
    by_image: dict[tuple[str, int], list[Crop]] = {}
    for c in crops:
        by_image.setdefault((c.split, c.image), []).append(c)
    for folder in sorted({(out / c.file).parent for c in crops}):
        folder.mkdir(parents=True, exist_ok=True)
    total = len(by_image)
    with tqdm(total=total, desc="cropping", unit="img", leave=False, disable=not progress or total < 300) as bar:
        for (split, i), items in by_image.items():
            im = read_image(data.splits[split][i].path, "fix or remove it")
            im = to_mode(im, 1 if im.mode in GRAY_MODES else 3)
            for c in items:
                _cut(im, c.window, size).save(out / c.file)
            bar.update()
    sources = {split: [im.path for im in images] for split, images in data.splits.items()}
    _write_manifest(out, crops, sources)
    classes = [*data.classes, BACKGROUND] if any(c.label == BACKGROUND for c in crops) else list(data.classes)
    return CropSet(classes, crops, sources, wanted, out)


def read_manifest(out: str | Path) -> list[dict[str, str]]:
    """The rows of ``OUT/crops.csv`` (every window :func:`write_crops` cut), as dicts of its columns."""
    with open(Path(out) / MANIFEST, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
