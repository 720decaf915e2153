"""Synthetic detection scenes: small objects (digits, Fashion-MNIST, a class folder) pasted onto real photographs.

No labelled detection data can be downloaded here, so cnnkit makes its own. Each scene is a random crop of a
photograph with objects pasted at random positions and scales, each painted in a colour that stands out from the
photo under it. An object's alpha is its own intensity (ink or garment pixels, normalised by its brightest pixel),
so the labels are exact: the mask is the pixels with alpha above :data:`ALPHA_THRESHOLD`, nothing outside the mask
is changed, and the box is the tight box of the mask, not the paste rectangle. Objects never share a pixel and
their boxes overlap little (IoU below ``max_iou``), so every mask is whole.

Train, val and test scenes draw their objects from disjoint object images (digits and class folders without
splits: a fixed 70/15/15 split; Fashion-MNIST: its training set for train, the halves of its test set for val and
test), so a model can't score by remembering a glyph.

Backgrounds: scikit-learn's two sample photographs, plus scikit-image's photographs when scikit-image is
installed (read from its data folder, never downloaded); or the photos of a folder the user names. The same seed
and the same photographs give byte-identical files.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..errors import CnnkitError
from .labels import FORMATS, IMAGE_SUFFIXES, SPLITS, WRITERS, Instance, LabelledImage

ALPHA_THRESHOLD = 0.3  # object pixels with alpha (0-1) above this form the mask; the rest are left transparent
DEFAULT_COUNTS = {"train": 2000, "val": 400, "test": 400}
DEFAULT_SIZE = {"digits": 64, "fashion-mnist": 64}  # class folders: 128
SKIMAGE_PHOTOS = (
    "astronaut.png",
    "coffee.png",
    "chelsea.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "camera.png",
    "brick.png",
    "grass.png",
    "gravel.png",
)
# Paint colours: bright ones for dark regions, dark or saturated ones for bright regions.
PALETTE = np.array(
    [
        (255, 255, 255), (255, 235, 59), (0, 255, 255), (255, 64, 255), (124, 252, 0), (255, 140, 0),
        (0, 0, 0), (25, 25, 112), (139, 0, 0), (0, 90, 0), (75, 0, 130), (200, 0, 60),
    ],
    dtype=np.float32,
)  # fmt: skip
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
MIN_CONTRAST = 0.4  # luminance difference (0-1) a paint colour keeps from the region's mean when it can
OUTPUT_LAYOUT = ("images", "masks", "labels", "annotations", "VOC", "data.yaml", "labels.csv")


@dataclass
class Scene:
    """One synthetic image and its objects."""

    image: np.ndarray  # uint8 [H, W, 3] RGB
    labels: list[int]  # class index per object
    boxes: np.ndarray  # float64 [N, 4] xyxy in pixels, the tight box of each mask
    masks: np.ndarray  # bool [N, H, W]


@dataclass
class SceneSet:
    """What :func:`synthesize` returns: class names, scenes per split, and whether mirroring keeps the meaning."""

    classes: list[str]
    splits: dict[str, list[Scene]]
    hflip: bool | None


@dataclass
class ObjectBank:
    """Object images per split: grayscale arrays whose intensity is the alpha (0 = transparent)."""

    classes: list[str]
    splits: dict[str, tuple[Sequence[np.ndarray], np.ndarray]]  # split -> (images [h, w] each, labels [n])
    hflip: bool | None
    default_size: int


# --- objects ------------------------------------------------------------------------------------------------------


def load_objects(objects: str | Path) -> ObjectBank:
    """``"digits"``, ``"fashion-mnist"`` or a class-folder path -> an :class:`ObjectBank` with train/val/test parts.

    Raises:
        CnnkitError: when Fashion-MNIST isn't on disk or the folder isn't a class-folder dataset.
    """
    if str(objects) == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        images = (d.images * (255 / 16)).round().astype(np.uint8)  # [1797, 8, 8]
        return ObjectBank([str(c) for c in d.target_names], _split_fixed(images, d.target), False, 64)
    if str(objects) == "fashion-mnist":
        from . import fashion_mnist

        data = fashion_mnist.load(None, allow_download=False)
        (train_x, train_y), (test_x, test_y) = data["train"], data["test"]
        half = len(test_y) // 2
        parts = {
            "train": (train_x, train_y),
            "val": (test_x[:half], test_y[:half]),
            "test": (test_x[half:], test_y[half:]),
        }
        return ObjectBank(list(fashion_mnist.CLASSES), parts, True, 64)  # a mirrored shoe is still a shoe
    return _folder_objects(Path(objects))


def _split_fixed(images: Sequence[np.ndarray], labels: np.ndarray) -> dict[str, tuple[list[np.ndarray], np.ndarray]]:
    """A fixed (seed-independent) 70/15/15 split, so the test objects are always the same ones."""
    order = np.random.default_rng(0).permutation(len(labels))
    cuts = np.split(order, [int(0.7 * len(order)), int(0.85 * len(order))])
    return {split: ([images[i] for i in idx], labels[idx]) for split, idx in zip(SPLITS, cuts)}


def _folder_objects(root: Path) -> ObjectBank:
    """A class folder (``ROOT/CLASS/*`` or ``ROOT/{train,val,test}/CLASS/*``); dark-on-light images are inverted."""
    from .folder import index_folder
    from .images import load_image

    index = index_folder(root)

    def load(files: list[tuple[Path, int]]) -> tuple[list[np.ndarray], np.ndarray]:
        return [_as_alpha_source(load_image(f, 1, None)[0].numpy()) for f, _ in files], np.array([y for _, y in files])

    if all(s in index.files for s in SPLITS):
        return ObjectBank(index.classes, {s: load(index.files[s]) for s in SPLITS}, None, 128)
    images, labels = load([item for files in index.files.values() for item in files])
    return ObjectBank(index.classes, _split_fixed(images, labels), None, 128)


def _as_alpha_source(a: np.ndarray) -> np.ndarray:
    """uint8 [h, w] with the object bright on dark (inverted when the border is brighter), at most 128 px a side."""
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    if border.mean() > 127:
        a = 255 - a
    if max(a.shape) > 128:
        im = Image.fromarray(a)
        im.thumbnail((128, 128), Image.Resampling.BILINEAR)
        a = np.asarray(im)
    return a


# --- backgrounds --------------------------------------------------------------------------------------------------


def load_backgrounds(folder: str | Path | None = None) -> list[Image.Image]:
    """RGB photographs: those under ``folder``, else scikit-learn's and (when installed) scikit-image's.

    Raises:
        CnnkitError: when ``folder`` holds no image.
    """
    if folder is not None:
        files = sorted(f for f in Path(folder).rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        if not files:
            raise CnnkitError(f"expected photos in --backgrounds {str(folder)!r}, found no image files; add some")
        return [_open_rgb(f) for f in files]
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(a) for a in load_sample_images().images]
    spec = importlib.util.find_spec("skimage")
    if spec is not None and spec.origin is not None:
        data_dir = Path(spec.origin).parent / "data"
        photos += [_open_rgb(data_dir / name) for name in SKIMAGE_PHOTOS if (data_dir / name).is_file()]
    return photos


def _open_rgb(path: Path) -> Image.Image:
    from .images import load_image

    return Image.fromarray(load_image(path, 3, None).permute(1, 2, 0).numpy())


def _background(rng: np.random.Generator, photos: list[Image.Image], size: tuple[int, int]) -> np.ndarray:
    """A random crop (30-100 % of the largest that fits, the scene's aspect ratio) of a random photo, resized to
    ``size`` and mirrored half the time -> uint8 [H, W, 3]."""
    photo = photos[rng.integers(len(photos))]
    (height, width), (pw, ph) = size, photo.size
    s = min(pw / width, ph / height) * rng.uniform(0.3, 1.0)
    x0, y0 = rng.uniform(0, pw - width * s), rng.uniform(0, ph - height * s)
    crop = photo.resize((width, height), Image.Resampling.BILINEAR, box=(x0, y0, x0 + width * s, y0 + height * s))
    a = np.asarray(crop)
    return np.ascontiguousarray(a[:, ::-1] if rng.random() < 0.5 else a)


# --- composing ----------------------------------------------------------------------------------------------------


def _object_alpha(obj: np.ndarray, side: int) -> np.ndarray:
    """uint8 [h, w] object -> float32 alpha resized so its longer side is ``side``, 0 outside the mask."""
    k = side / max(obj.shape)
    h, w = max(1, round(obj.shape[0] * k)), max(1, round(obj.shape[1] * k))
    a = obj.astype(np.float32) / max(float(obj.max()), 1.0)
    a = np.asarray(Image.fromarray(a, "F").resize((w, h), Image.Resampling.BILINEAR))
    return np.where(a > ALPHA_THRESHOLD, np.clip(a * 1.3, 0.0, 1.0), 0.0).astype(np.float32)


def _tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """bool [h, w] -> (x1, y1, x2, y2), the smallest box holding every True pixel (x2, y2 exclusive)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    iw, ih = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _place(
    rng: np.random.Generator, mask: np.ndarray, occupied: np.ndarray, boxes: list, max_iou: float, tries: int = 20
) -> tuple[int, int] | None:
    """A random top-left (y, x) where the object fits inside the scene, touches no other object's pixel and has
    IoU < ``max_iou`` with every other box; None when ``tries`` draws all fail."""
    (h, w), (height, width) = mask.shape, occupied.shape
    if h > height or w > width:
        return None
    bx1, by1, bx2, by2 = _tight_box(mask)
    for _ in range(tries):
        y, x = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        box = (x + bx1, y + by1, x + bx2, y + by2)
        if all(_iou(box, b) < max_iou for b in boxes) and not (occupied[y : y + h, x : x + w] & mask).any():
            return y, x
    return None


def _paint_colour(rng: np.random.Generator, region: np.ndarray) -> np.ndarray:
    """A palette colour whose luminance differs from the region's mean by at least MIN_CONTRAST (else the most
    different three) -> float32 [3]."""
    mean = float(region.reshape(-1, 3).mean(0) @ LUMA) / 255
    diff = np.abs(PALETTE @ LUMA / 255 - mean)
    candidates = np.flatnonzero(diff >= MIN_CONTRAST)
    if len(candidates) == 0:
        candidates = np.argsort(-diff)[:3]
    return PALETTE[candidates[rng.integers(len(candidates))]]


def _compose(
    rng: np.random.Generator,
    objects: tuple[Sequence[np.ndarray], np.ndarray],
    photos: list[Image.Image],
    size: tuple[int, int],
    count: int,
    scale: tuple[float, float],
    max_iou: float,
) -> Scene:
    """One scene with exactly ``count`` objects."""
    images, labels = objects
    canvas = _background(rng, photos, size).astype(np.float32)
    occupied = np.zeros(size, dtype=bool)
    out_labels, boxes, masks, failures = [], [], [], 0
    while len(out_labels) < count:
        i = int(rng.integers(len(labels)))
        alpha = _object_alpha(images[i], max(2, round(rng.uniform(*scale) * min(size))))
        mask = alpha > 0
        pos = _place(rng, mask, occupied, boxes, max_iou) if mask.any() else None
        if pos is None:
            failures += 1
            if failures > 200:
                raise CnnkitError(
                    f"expected room for {count} objects in a {size[0]}×{size[1]} scene, found none after 200 tries; "
                    "ask for fewer objects per image, a smaller scale or a larger size"
                )
            continue
        (y, x), (h, w) = pos, mask.shape
        region = canvas[y : y + h, x : x + w]
        colour = _paint_colour(rng, region[mask])
        region += alpha[..., None] * (colour - region)  # alpha is 0 outside the mask: those pixels stay as they were
        full = np.zeros(size, dtype=bool)
        full[y : y + h, x : x + w] = mask
        occupied |= full
        bx1, by1, bx2, by2 = _tight_box(mask)
        out_labels.append(int(labels[i]))
        boxes.append((x + bx1, y + by1, x + bx2, y + by2))
        masks.append(full)
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    masks_arr = np.stack(masks) if masks else np.zeros((0, *size), dtype=bool)
    return Scene(image, out_labels, np.array(boxes, dtype=np.float64).reshape(-1, 4), masks_arr)


def synthesize(
    objects: str | Path = "digits",
    *,
    backgrounds: str | Path | None = None,
    objects_per_image: int | tuple[int, int] = (1, 1),
    size: int | tuple[int, int] | None = None,
    train: int | None = None,
    val: int | None = None,
    test: int | None = None,
    scale: tuple[float, float] | None = None,
    max_iou: float = 0.3,
    seed: int = 0,
    progress: bool = True,
) -> SceneSet:
    """Generate labelled scenes: objects pasted onto photographs, with exact boxes and masks.

    Args:
        objects: ``"digits"`` (scikit-learn, 8×8, 10 classes), ``"fashion-mnist"`` (28×28, 10 classes; must be on
            disk) or a class-folder path.
        backgrounds: a folder of photos; default scikit-learn's and scikit-image's photographs.
        objects_per_image: N, or (min, max) drawn uniformly per scene; (1, 1) for localisation.
        size: scene side, or (H, W); default 64 for digits and Fashion-MNIST, 128 for class folders.
        train, val, test: scenes per split (default 2000, 400, 400; 0 leaves the split out).
        scale: range of an object's side (its whole image, margins included) as a fraction of the scene's
            shorter side; default (0.25, 0.6) / sqrt(max objects per image).
        max_iou: largest IoU allowed between two boxes of a scene.
        seed: the same seed gives the same scenes; each split has its own stream, so changing one split's count
            leaves the others as they were.
        progress: show a progress bar (for more than a few hundred scenes).

    Returns:
        A :class:`SceneSet`: scenes per split, each with image uint8 [H, W, 3], labels [N], boxes [N, 4] xyxy and
        masks bool [N, H, W].

    Raises:
        CnnkitError: for a bad option, missing objects or backgrounds, or objects that can't be placed.
    """
    lo, hi = _count_range(objects_per_image)
    bank, photos = load_objects(objects), load_backgrounds(backgrounds)
    hw = _size(size if size is not None else bank.default_size)
    scale = scale or (0.25 / max(hi, 1) ** 0.5, 0.6 / max(hi, 1) ** 0.5)
    if not 0 < scale[0] <= scale[1] <= 1:
        raise CnnkitError(f"expected an object scale range 0 < min <= max <= 1, found {scale}; fix the scale")
    counts = {s: n if n is not None else DEFAULT_COUNTS[s] for s, n in zip(SPLITS, (train, val, test))}
    if any(n < 0 for n in counts.values()) or not any(counts.values()) or seed < 0:
        raise CnnkitError(f"expected scene counts >= 0 (one > 0) and a seed >= 0, found {counts}, seed {seed}")
    total = sum(counts.values())
    splits: dict[str, list[Scene]] = {}
    with tqdm(total=total, desc="synthesizing", unit="img", leave=False, disable=not progress or total < 300) as bar:
        for k, split in enumerate(SPLITS):
            rng = np.random.default_rng([seed, k])
            splits[split] = []
            for _ in range(counts[split]):
                n = int(rng.integers(lo, hi + 1))
                splits[split].append(_compose(rng, bank.splits[split], photos, hw, n, scale, max_iou))
                bar.update()
    return SceneSet(bank.classes, {s: v for s, v in splits.items() if v}, bank.hflip)


def _count_range(objects_per_image: int | tuple[int, int]) -> tuple[int, int]:
    lo, hi = (objects_per_image, objects_per_image) if isinstance(objects_per_image, int) else objects_per_image
    if not 0 <= lo <= hi <= 255:
        raise CnnkitError(
            f"expected objects per image as N or MIN..MAX with 0 <= MIN <= MAX <= 255, found {objects_per_image}"
        )
    return int(lo), int(hi)


def _size(size: int | tuple[int, int]) -> tuple[int, int]:
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if len(hw) != 2 or min(hw) < 8:
        raise CnnkitError(f"expected a scene size of at least 8 pixels (N or (H, W)), found {size}; pick a larger one")
    return int(hw[0]), int(hw[1])


# --- writing ------------------------------------------------------------------------------------------------------


def prepare_out(out: str | Path, overwrite: bool = False, layout: Sequence[str] = OUTPUT_LAYOUT) -> Path:
    """Make sure ``out`` can take a new dataset: new or empty; with ``overwrite``, the files a previous writer left
    there (``layout``: by default what :func:`write_scenes` writes, :data:`OUTPUT_LAYOUT`) are deleted, and nothing
    else.

    Raises:
        CnnkitError: when ``out`` holds files and ``overwrite`` is False.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CnnkitError(f"expected a folder for --out, found a file at {str(out)!r}; pick another path")
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if entries and not overwrite:
        shown = ", ".join(entries[:5]) + (", …" if len(entries) > 5 else "")
        raise CnnkitError(
            f"expected a new or empty --out folder, found {shown} in {str(out)!r}; pick another folder or pass --force"
        )
    for name in layout if entries else ():
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_scenes(
    out: str | Path,
    scenes: SceneSet,
    formats: Sequence[str] = ("yolo",),
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Path]:
    """Write scenes as ``images/<split>/000000.png``, instance-id masks ``masks/<split>/000000.png`` (0 background,
    i the i-th object) and labels in each of ``formats``: ``yolo`` (``labels/``, ``data.yaml``), ``coco``
    (``annotations/instances_<split>.json`` with RLE masks), ``voc`` (``VOC/``) and ``csv`` (``labels.csv``).

    YOLO's ``data.yaml`` is written last, so a folder that has one is complete.

    Returns:
        ``{format: path}``: what to pass to :func:`~cnnkit.data.labels.open_box_dataset` for each format.

    Raises:
        CnnkitError: for an unknown format, or a non-empty ``out`` without ``overwrite``.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise CnnkitError(f"expected label formats among {', '.join(FORMATS)}, found {list(formats)}; fix --format")
    out = prepare_out(out, overwrite)
    total = sum(len(v) for v in scenes.splits.values())
    splits: dict[str, list[LabelledImage]] = {}
    with tqdm(total=total, desc="writing", unit="img", leave=False, disable=not progress or total < 300) as bar:
        for split, items in scenes.splits.items():
            splits[split] = []
            for i, scene in enumerate(items):
                splits[split].append(_write_scene(out, split, f"{i:06d}", scene))
                bar.update()
    paths = {}
    for fmt in sorted(formats, key=lambda f: f == "yolo"):  # data.yaml last
        target = {"yolo": out, "coco": out, "voc": out / "VOC", "csv": out / "labels.csv"}[fmt]
        extra = {"hflip": scenes.hflip} if fmt == "yolo" else {}
        paths[fmt] = WRITERS[fmt](target, scenes.classes, splits, **extra)
    return {f: paths[f] for f in formats}


def _write_scene(out: Path, split: str, stem: str, scene: Scene) -> LabelledImage:
    """Image and instance-id mask PNGs -> the LabelledImage (bool masks as segmentations) for the label writers."""
    image_path, mask_path = out / "images" / split / f"{stem}.png", out / "masks" / split / f"{stem}.png"
    for p in (image_path, mask_path):
        p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(scene.image, "RGB").save(image_path)
    ids = np.zeros(scene.image.shape[:2], dtype=np.uint8)
    for j, mask in enumerate(scene.masks, 1):
        ids[mask] = j
    Image.fromarray(ids, "L").save(mask_path)
    height, width = ids.shape
    instances = [Instance(c, tuple(float(v) for v in b), m) for c, b, m in zip(scene.labels, scene.boxes, scene.masks)]
    return LabelledImage(Path(os.path.abspath(image_path)), width, height, instances)
