"""Box and mask labels in the formats people bring: YOLO ``data.yaml``, COCO JSON, Pascal VOC XML and a plain CSV.

:func:`open_box_dataset` detects the format from what it is given and returns one :class:`BoxDataset`, boxes
always ``xyxy`` in pixels with ``0 <= x1 < x2 <= width``. Every entry is checked (field count, numbers, class,
positive size, box inside the image, image and label files present); a bad one raises :class:`LabelError`
naming the file and line. With ``skip_bad`` the *whole image* holding a bad entry is skipped and listed in
``BoxDataset.skipped`` instead: dropping only the bad object would teach a model that the object is background.
A box may stick out of the image by up to one pixel (rounding; 1e-3 of the side for YOLO's normalised
numbers) and is then clipped to it.

Format notes:

- YOLO: relative ``path`` is relative to the yaml's folder; relative lines of a ``.txt`` image list are
  relative to that list's folder. A split entry ``../x`` that does not exist is read as ``x`` (Roboflow's exports
  write ``train: ../train/images`` beside ``train/``; Ultralytics reads them the same way). YOLO segmentation
  lines (``class x1 y1 x2 y2 …``, at least three points) are read too: box = the polygon's bounds, segmentation =
  the polygon in pixels. A folder with a ``classes.txt`` or ``obj.names`` instead of a yaml is one split of every
  image under it; a label file is looked for in ``labels/`` beside ``images/`` first, then beside the image
  (darknet's rule). An image without a label file has no objects (Ultralytics' background images), but a
  split none of whose images has one is an error (the labels are elsewhere). The writer writes boxes only.
- COCO: ``iscrowd=1`` annotations (one region covering a crowd) are ignored, as detection training does, except
  in a file where every annotation has it: CVAT writes each mask that way, so there they are objects.
  Category ids may be any integers; they become 0..K-1 in id order. The writer numbers them from 1.
- CSV: ``path,label,x,y,w,h[,split]`` (cnnkit's own), or TensorFlow's object detection CSV
  ``filename,width,height,class,xmin,ymin,xmax,ymax`` (labelImg's converters, Roboflow), whose corners are pixels.
- VOC and CSV carry class *names* only: classes are the sorted set of names found, so a round trip keeps the
  names of the objects but not a class order that wasn't sorted, nor classes that no object uses. VOC keeps
  ``difficult`` objects. A CSV row with a path and nothing else is an image with no objects.

Image files are resolved to absolute paths without following symlinks (a symlinked ``images/`` folder still
finds its ``labels/`` sibling). A COCO or CSV image path written on another machine (``C:\\data\\a.jpg``, a
home folder elsewhere) that is not found as written is looked for by its file name.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import yaml
from PIL import Image, UnidentifiedImageError

from ..errors import CnnkitError
from ..io import atomic_write, write_text
from .images import BadImageError, _reason

SPLITS = ("train", "val", "test")
FORMATS = ("yolo", "coco", "voc", "csv")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
CSV_COLUMNS = ("path", "label", "x", "y", "w", "h")
CSV_CORNERS = ("filename", "class", "xmin", "ymin", "xmax", "ymax")  # TensorFlow's object detection CSV
TOLERANCE = 1.0  # pixels a box may stick out of the image (rounding); such a box is clipped
YOLO_TOLERANCE = 1e-3  # the same for YOLO's normalised 0-1 numbers
SKIP_HINT = "fix the label or pass --skip-bad"

T = TypeVar("T")


@dataclass
class Instance:
    """One object: class index, ``xyxy`` pixel box and an optional COCO-style segmentation."""

    label: int
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels, 0 <= x1 < x2 <= width
    segmentation: Any = None  # list of polygons [[x, y, ...], ...], an RLE dict, a bool mask [H, W] (writers), or None


@dataclass
class LabelledImage:
    """An image file, its size and its objects (none is valid: a background image)."""

    path: Path
    width: int
    height: int
    instances: list[Instance]


@dataclass
class BoxDataset:
    """What :func:`open_box_dataset` found: classes, images per split, the format and what was skipped."""

    classes: list[str]
    splits: dict[str, list[LabelledImage]]  # keys among "train", "val", "test"; or "all" when the source has no splits
    source: str
    format: str  # "yolo" | "coco" | "voc" | "csv"
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file[:line], reason)
    hflip: bool | None = None  # whether mirroring keeps the meaning; None = unknown


class LabelError(CnnkitError):
    """A label a user can fix, located by file and line (or JSON entry, like ``annotations[3]``)."""

    def __init__(
        self,
        path: str | Path,
        line: int | str | None,
        reason: str,
        *,
        expected: str = "a valid label",
        hint: str = SKIP_HINT,
    ) -> None:
        self.path, self.line, self.reason = str(path), line, reason
        self.where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"expected {expected}, found {reason} in {self.where}; {hint}")


# --- shared checks ----------------------------------------------------------------------------------------------


def read_label_text(path: Path) -> str:
    """The UTF-8 text of a label file, without the byte order mark Windows tools (Notepad, Excel's "CSV UTF-8") put
    first; a LabelError naming the line of a byte that is not UTF-8."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        reason = f"byte {data[e.start]:#04x} that is not UTF-8 text"
        raise LabelError(path, line, reason, expected="a UTF-8 text file", hint="save it as UTF-8") from None


def _collect(items: Iterable[Any], read: Callable[[Any], T], skip_bad: bool, skipped: list[tuple[str, str]]) -> list[T]:
    """``read(item)`` for each item; a bad label or image raises, or with ``skip_bad`` is listed and left out."""
    out = []
    for item in items:
        try:
            out.append(read(item))
        except (LabelError, BadImageError) as e:
            _fail(e, skip_bad, skipped)
    return out


def _fail(e: LabelError | BadImageError, skip_bad: bool, skipped: list[tuple[str, str]]) -> None:
    """Raise ``e``, or with ``skip_bad`` list it in ``skipped``."""
    if not skip_bad:
        raise e
    skipped.append((e.where if isinstance(e, LabelError) else e.path, e.reason))


def _check_box(
    box: Sequence[float], width: int, height: int, path: Path, line: int | str | None, tol: float = TOLERANCE
) -> tuple[float, float, float, float]:
    """Validate an ``xyxy`` pixel box and clip it to the image (it may stick out by ``tol`` pixels)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise LabelError(path, line, f"a box with a non-finite number {(x1, y1, x2, y2)}", expected="finite numbers")
    if x2 <= x1 or y2 <= y1:
        size = f"{x2 - x1:g}×{y2 - y1:g}"
        raise LabelError(path, line, f"a box of size {size}", expected="a box of positive width and height")
    if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
        corners = f"({x1:g}, {y1:g}, {x2:g}, {y2:g})"
        found = f"box {corners} outside the {width}×{height} image"
        raise LabelError(path, line, found, expected="a box inside the image")
    clipped = (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        raise LabelError(path, line, f"a box that is empty inside the {width}×{height} image", expected="a visible box")
    return clipped


ORIENTATION_TAG = 0x0112  # EXIF Orientation


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) as the image is displayed, from the file header, without decoding pixels.

    A photo whose EXIF orientation turns it a quarter (orientations 5–8, as phones write them) is displayed, decoded
    by cnnkit and labelled by annotation tools upright, so its width and height are the header's swapped.

    Raises:
        BadImageError: naming the file, when the header can't be read.
    """
    try:
        with Image.open(path) as im:
            width, height = im.size
            turned = im.getexif().get(ORIENTATION_TAG, 1) in (5, 6, 7, 8)
            return (height, width) if turned else (width, height)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise BadImageError(path, _reason(e)) from None


def _abs(path: str | Path) -> Path:
    return Path(os.path.abspath(path))


def _image_files(folder: Path) -> list[Path]:
    return sorted(_abs(f) for f in folder.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())


# --- opening ------------------------------------------------------------------------------------------------------


def open_box_dataset(path: str | Path, *, skip_bad: bool = False) -> BoxDataset:
    """Open a box dataset in any of the accepted formats, detected from ``path``.

    Args:
        path: a YOLO ``data.yaml`` (or a folder holding one, or a folder with a ``classes.txt`` / ``obj.names``
            class list and no yaml: LabelImg, Label Studio, CVAT's "YOLO 1.1"); a COCO ``.json`` (or a folder with
            ``annotations/instances_{train,val,test}*.json``, or that ``annotations`` folder itself, or Roboflow's
            export with ``{train,valid,test}/_annotations.coco.json``, or one ``annotations/*.json`` of another
            name such as CVAT's ``instances_default.json``, or Label Studio's ``result.json``); a Pascal VOC
            folder (with ``Annotations/``, or holding such a ``VOC/``, or a download's ``VOCdevkit/`` with one
            ``VOC<year>/``); a ``.csv`` with the columns
            ``path,label,x,y,w,h[,split]`` or TensorFlow's ``filename,class,xmin,ymin,xmax,ymax`` (or a folder
            holding ``labels.csv``, or Roboflow's export with ``{train,valid,test}/_annotations.csv``). Tried in that
            order.
        skip_bad: skip (and list in ``skipped``) each image whose label or file is bad instead of raising.

    Raises:
        LabelError: naming the file and line of the first bad label (without ``skip_bad``).
        BadImageError: for an image whose header can't be read (without ``skip_bad``).
        CnnkitError: when ``path`` is none of the accepted formats.
    """
    p = _abs(path)
    fmt, target = _detect(p)
    if fmt == "yolo" and target.name in YOLO_CLASS_LISTS:
        return _open_yolo_folder(target, skip_bad)
    reader = {"yolo": _open_yolo, "coco": _open_coco, "voc": _open_voc, "csv": _open_csv}[fmt]
    return reader(target, skip_bad)


def _detect(p: Path) -> tuple[str, Path]:
    if p.is_file():
        suffix = p.suffix.lower()
        kinds = {".yaml": "yolo", ".yml": "yolo", ".json": "coco", ".csv": "csv"}
        if suffix in kinds:
            return kinds[suffix], p
    elif p.is_dir():
        for name in ("data.yaml", "data.yml"):
            if (p / name).is_file():
                return "yolo", p / name
        if _coco_split_files(p):
            return "coco", p
        if (p / "Annotations").is_dir():
            return "voc", p
        if (p / "VOC" / "Annotations").is_dir():  # what cnnkit data synth --format voc writes
            return "voc", p / "VOC"
        if voc := _voc_year_folder(p):  # the VOCdevkit/ root of a Pascal VOC download
            return "voc", voc
        if (p / "labels.csv").is_file():
            return "csv", p / "labels.csv"
        if _csv_files(p):
            return "csv", p
        if names := _yolo_class_list(p):
            return "yolo", names
    found = "a file of another kind" if p.is_file() else ("a folder of another layout" if p.exists() else "nothing")
    raise CnnkitError(
        f"expected a box dataset at {str(p)!r}: a YOLO data.yaml (or a folder holding one, or a classes.txt), a COCO"
        f" .json (or a folder with annotations/instances_<split>.json), a Pascal VOC folder (with Annotations/), or a"
        f" .csv with columns path,label,x,y,w,h[,split] or filename,class,xmin,ymin,xmax,ymax; found {found}"
    )


def _voc_year_folder(p: Path) -> Path | None:
    """The one ``VOC<year>`` folder with ``Annotations/`` in ``p`` or ``p/VOCdevkit`` (a Pascal VOC download's
    root); None when there is none. Several (VOC2007 and VOC2012) are a CnnkitError: which one is meant?"""
    for root in (p, p / "VOCdevkit"):
        found = sorted(d for d in root.glob("VOC*") if (d / "Annotations").is_dir()) if root.is_dir() else []
        if len(found) > 1:
            names = ", ".join(str(d) for d in found)
            raise CnnkitError(f"expected one Pascal VOC year in {str(root)!r}, found {names}; pass the one to use")
        if found:
            return found[0]
    return None


# --- YOLO ---------------------------------------------------------------------------------------------------------


def _open_yolo(yaml_path: Path, skip_bad: bool) -> BoxDataset:
    cfg = _read_yaml(yaml_path)
    classes = _yolo_names(cfg, yaml_path)
    root = Path(str(cfg.get("path") or "."))
    root = _abs(root if root.is_absolute() else yaml_path.parent / root)
    skipped: list[tuple[str, str]] = []
    splits = {}
    for split in SPLITS:
        if cfg.get(split):
            items = _yolo_images(cfg[split], root, yaml_path, split)
            _check_yolo_labels_found(items, yaml_path, split)
            splits[split] = _collect(items, lambda item: _read_yolo_image(*item, classes), skip_bad, skipped)
    if not splits:
        raise LabelError(yaml_path, None, "no train, val or test entry", expected="image folders", hint="fix data.yaml")
    hflip = cfg.get("hflip")
    if hflip is not None and not isinstance(hflip, bool):
        raise LabelError(yaml_path, None, f"hflip: {hflip!r}", expected="hflip: true or false", hint="fix data.yaml")
    return BoxDataset(classes, splits, str(yaml_path), "yolo", skipped, hflip)


YOLO_CLASS_LISTS = ("classes.txt", "obj.names")  # LabelImg and Label Studio; darknet and CVAT's "YOLO 1.1"


def _yolo_class_list(folder: Path) -> Path | None:
    """The class-name list of a YOLO folder without a data.yaml (``classes.txt`` or ``obj.names``), or None."""
    return next((folder / n for n in YOLO_CLASS_LISTS if (folder / n).is_file()), None)


def _open_yolo_folder(names_file: Path, skip_bad: bool) -> BoxDataset:
    """A YOLO folder without a data.yaml: every image under the class list's folder (one split, ``all``), its
    labels in ``labels/`` beside ``images/`` or beside the image itself (:func:`yolo_label_path`)."""
    classes = [line.strip() for line in read_label_text(names_file).splitlines() if line.strip()]
    if not classes:
        raise LabelError(names_file, None, "no class names", expected="one class name per line",
                         hint="write the class names, in class-id order")  # fmt: skip
    items: list[tuple[Path, Path | None, int | None]] = [(f, None, None) for f in _image_files(names_file.parent)]
    if not items:
        raise LabelError(names_file, None, f"no image files under {names_file.parent}", expected="images")
    _check_yolo_labels_found(items, names_file, "", hint="put each x.txt beside x.jpg, or in labels/ beside images/")
    skipped: list[tuple[str, str]] = []
    images = _collect(items, lambda item: _read_yolo_image(*item, classes), skip_bad, skipped)
    return BoxDataset(classes, {"all": images}, str(names_file), "yolo", skipped)


def _read_yaml(path: Path) -> dict:
    try:
        cfg = yaml.safe_load(read_label_text(path))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise LabelError(path, line, "invalid YAML", expected="a YAML mapping", hint="fix data.yaml") from None
    if not isinstance(cfg, dict):
        raise LabelError(path, None, f"a {type(cfg).__name__}", expected="a YAML mapping", hint="fix data.yaml")
    return cfg


def _yolo_names(cfg: dict, path: Path) -> list[str]:
    """``names`` as a list, or a dict {id: name} with ids 0..K-1."""
    names = cfg.get("names")
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    if isinstance(names, dict) and names:
        try:
            ids = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            ids = []
        if ids == list(range(len(names))):
            return [str(names[k] if k in names else names[str(k)]) for k in ids]
    expected = "names: a list of class names, or a mapping {0: name, 1: name, …} with ids 0..K-1"
    raise LabelError(path, None, f"names: {names!r}", expected=expected, hint="fix data.yaml")


def _yolo_images(entry: Any, root: Path, yaml_path: Path, split: str) -> list[tuple[Path, Path | None, int | None]]:
    """Images of one split: (image, list file, line) for a folder, a .txt list, or a list of either."""
    items: list[tuple[Path, Path | None, int | None]] = []
    for e in entry if isinstance(entry, list) else [entry]:
        p = Path(str(e))
        p = p if p.is_absolute() else root / p
        if not p.exists() and str(e).startswith("../"):  # Roboflow's train: ../train/images, read as Ultralytics does
            p = root / str(e)[3:]
        if p.is_dir():
            items += [(f, None, None) for f in _image_files(p)]
        elif p.is_file() and p.suffix == ".txt":
            lines = enumerate(read_label_text(p).splitlines(), 1)
            items += [(_abs(p.parent / s.strip()), p, n) for n, s in lines if s.strip()]
        else:
            found = f"{split}: {e!r}, which is no folder or .txt list (looked at {p})"
            raise LabelError(yaml_path, None, found, expected="an images folder or a .txt list", hint="fix data.yaml")
    return items


def ultralytics_label_path(image: str | Path) -> Path:
    """Where Ultralytics keeps an image's labels: the last ``/images/`` -> ``/labels/``, suffix ``.txt``."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return Path(sb.join(str(image).rsplit(sa, 1))).with_suffix(".txt")


def yolo_label_path(image: str | Path) -> Path:
    """The label file of an image, as Ultralytics finds it (:func:`ultralytics_label_path`); as darknet finds it
    when that file does not exist: beside the image (LabelImg, CVAT's "YOLO 1.1")."""
    ultralytics, beside = ultralytics_label_path(image), Path(image).with_suffix(".txt")
    return beside if not ultralytics.is_file() and beside.is_file() else ultralytics


def _check_yolo_labels_found(items: list[tuple[Path, Path | None, int | None]], yaml_path: Path, split: str,
                             hint: str = "fix data.yaml or move the label files there") -> None:  # fmt: skip
    """A split none of whose images has a label file is a layout error, not a split of background images."""
    if items and not any(yolo_label_path(image).is_file() for image, _, _ in items):
        what = f"{split} images" if split else "images"
        found = f"no label file for any of the {len(items)} {what} (looked for {yolo_label_path(items[0][0])})"
        expected = "a labels/ folder beside images/ (…/images/x.jpg -> …/labels/x.txt)"
        raise LabelError(yaml_path, None, found, expected=expected, hint=hint)


def _read_yolo_image(image: Path, list_file: Path | None, line: int | None, classes: list[str]) -> LabelledImage:
    """An image and its label file's objects; no label file is an image without objects, as in Ultralytics."""
    if not image.is_file():
        raise LabelError(list_file or image, line, f"no image file {image}", expected="an image file")
    label = yolo_label_path(image)
    width, height = image_size(image)
    if not label.is_file():
        return LabelledImage(image, width, height, [])
    lines = enumerate(read_label_text(label).splitlines(), 1)
    instances = [_yolo_instance(s, n, label, width, height, len(classes)) for n, s in lines if s.strip()]
    return LabelledImage(image, width, height, instances)


def _yolo_instance(text: str, line: int, path: Path, width: int, height: int, num_classes: int) -> Instance:
    """``class cx cy w h`` (or ``class x1 y1 x2 y2 …``, a polygon) normalised to 0-1 -> an Instance in pixels."""
    fields = text.split()
    if len(fields) != 5 and (len(fields) < 7 or len(fields) % 2 == 0):
        expected = "'class cx cy w h' (5 fields) or a polygon 'class x1 y1 x2 y2 x3 y3 …'"
        raise LabelError(path, line, f"{len(fields)} fields ({text.strip()!r})", expected=expected)
    try:
        values = [float(v) for v in fields]
    except ValueError:
        raise LabelError(path, line, f"a non-number in {text.strip()!r}", expected="numbers") from None
    if not all(math.isfinite(v) for v in values):
        raise LabelError(path, line, f"a non-finite number in {text.strip()!r}", expected="finite numbers")
    cls, coords = values[0], values[1:]
    if not cls.is_integer() or not 0 <= cls < num_classes:
        raise LabelError(path, line, f"class id {fields[0]}", expected=f"a class id in 0..{num_classes - 1}")
    if len(coords) == 4:
        cx, cy, w, h = coords
        if w <= 0 or h <= 0:
            raise LabelError(path, line, f"a box of size {w:g}×{h:g}", expected="a box of positive width and height")
        x1, y1, x2, y2, seg = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, None
    else:
        x1, y1, x2, y2 = min(coords[0::2]), min(coords[1::2]), max(coords[0::2]), max(coords[1::2])
        seg = [[v * (width if i % 2 == 0 else height) for i, v in enumerate(coords)]]
    if min(x1, y1) < -YOLO_TOLERANCE or max(x2, y2) > 1 + YOLO_TOLERANCE:
        corners = f"({x1:g}, {y1:g}, {x2:g}, {y2:g})"
        raise LabelError(path, line, f"box corners {corners} outside 0-1", expected="normalised coordinates in 0-1")
    box = _check_box((x1 * width, y1 * height, x2 * width, y2 * height), width, height, path, line, tol=math.inf)
    return Instance(int(cls), box, seg)


# --- COCO ---------------------------------------------------------------------------------------------------------

COCO_NAME = re.compile(r"instances_(train|val|test)(\d*)\.json")
ROBOFLOW_COCO = "_annotations.coco.json"  # Roboflow's COCO export: one per split folder, beside its images
LABEL_STUDIO_COCO = "result.json"  # Label Studio's COCO export, beside its images/ folder
ROBOFLOW_CSV = "_annotations.csv"  # Roboflow's "TensorFlow Object Detection CSV" export, one per split folder
ROBOFLOW_SPLITS = {"train": "train", "valid": "val", "val": "val", "test": "test"}


def _coco_split_files(folder: Path) -> dict[str, Path]:
    """``{split: json}`` from ``folder/annotations/instances_<split>*.json`` (or ``folder/instances_…``), or from
    Roboflow's COCO export: ``folder/{train,valid,test}/_annotations.coco.json`` with the images beside each
    (``{"all": …}`` for one such folder given alone)."""
    for d in (folder / "annotations", folder):
        found: dict[str, list[Path]] = defaultdict(list)
        for f in sorted(d.glob("instances_*.json")) if d.is_dir() else []:
            if m := COCO_NAME.fullmatch(f.name):
                found[m[1]].append(f)
        for split, files in found.items():
            if len(files) > 1:
                names = ", ".join(f.name for f in files)
                raise CnnkitError(f"expected one {split} annotation file in {str(d)!r}, found {names}; keep one")
        if found:
            return {s: found[s][0] for s in SPLITS if s in found}
    if (folder / ROBOFLOW_COCO).is_file():
        return {"all": folder / ROBOFLOW_COCO}
    if (folder / LABEL_STUDIO_COCO).is_file():
        return {"all": folder / LABEL_STUDIO_COCO}
    if len(others := sorted((folder / "annotations").glob("*.json"))) == 1:  # CVAT: instances_default.json
        return {"all": others[0]}
    return _split_folders(folder, ROBOFLOW_COCO)


def _split_folders(folder: Path, name: str) -> dict[str, Path]:
    """``{split: folder/<split folder>/name}`` for Roboflow's exports, one split per subfolder (``train``,
    ``valid`` or ``val``, ``test``), each with its labels file ``name`` beside its images; only those that exist."""
    exported = {ROBOFLOW_SPLITS.get(d.name, d.name): d / name for d in folder.iterdir() if d.is_dir()}
    return {s: exported[s] for s in SPLITS if s in exported and exported[s].is_file()}


def _open_coco(path: Path, skip_bad: bool) -> BoxDataset:
    files = _coco_split_files(path) if path.is_dir() else {"all": path}
    classes: list[str] | None = None
    splits, skipped = {}, []
    for split, json_path in files.items():
        names, images = _read_coco_json(json_path, skip_bad, skipped)
        if classes is not None and names != classes:
            raise CnnkitError(
                f"expected the same categories in every split, found {names} in {str(json_path)!r} and {classes} "
                "before; give every annotation file the same categories list"
            )
        classes, splits[split] = names, images
    return BoxDataset(classes or [], splits, str(path), "coco", skipped)


def _load_json(path: Path) -> Any:
    try:
        return json.loads(read_label_text(path))
    except json.JSONDecodeError as e:
        raise LabelError(path, e.lineno, f"invalid JSON ({e.msg})", expected="JSON", hint="fix the file") from None
    except UnicodeDecodeError:
        raise LabelError(path, None, "a binary file", expected="JSON text", hint="fix the file") from None


def _read_coco_json(path: Path, skip_bad: bool, skipped: list[tuple[str, str]]) -> tuple[list[str], list]:
    """Classes and images of one COCO instances file."""
    data = _load_json(path)
    cats = _coco_categories(data, path)
    index = {c["id"]: i for i, c in enumerate(cats)}
    image_ids = {img.get("id") for img in data["images"] if isinstance(img, dict)}
    by_image: dict[Any, list[tuple[int, dict]]] = defaultdict(list)
    annotations = data.get("annotations") or []
    is_object = coco_objects(annotations)
    for j, ann in enumerate(annotations):
        image_id = ann.get("image_id") if isinstance(ann, dict) else None
        if image_id not in image_ids:
            err = LabelError(path, f"annotations[{j}]", f"image_id {image_id!r}", expected="a listed image id")
            _fail(err, skip_bad, skipped)
        if is_object(ann):
            by_image[image_id].append((j, ann))
    dirs = _coco_image_dirs(path)

    def read(item: tuple[int, Any]) -> LabelledImage:
        i, img = item
        if not isinstance(img, dict):
            raise LabelError(path, f"images[{i}]", f"{img!r}", expected="an image object")
        return _coco_image(path, i, img, by_image[img.get("id")], index, dirs)

    return [str(c["name"]) for c in cats], _collect(enumerate(data["images"]), read, skip_bad, skipped)


def coco_crowd(ann: dict) -> bool:
    """Whether a COCO annotation is a crowd region: ``iscrowd`` 1, also when a tool wrote it as "1" or 1.0 (the
    string "0" is not a crowd, though it is true in Python)."""
    return str(ann.get("iscrowd") or 0).strip().lower() in ("1", "1.0", "true")


def coco_objects(annotations: list) -> Callable[[Any], bool]:
    """Which annotations of one COCO file are objects: those that are not crowd regions (:func:`coco_crowd`),
    except in a file whose annotations are *all* crowd regions. CVAT and Datumaro write every mask as an RLE with
    ``iscrowd: 1``; a file holding only those is a set of objects, not of crowds to ignore."""
    all_crowd = bool(annotations) and all(isinstance(a, dict) and coco_crowd(a) for a in annotations)
    return lambda ann: all_crowd or not (isinstance(ann, dict) and coco_crowd(ann))


def _coco_categories(data: Any, path: Path) -> list[dict]:
    """The categories sorted by id, after checking the file's overall shape."""
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not data.get("categories"):
        found = f"keys {sorted(data)}" if isinstance(data, dict) else f"a JSON {type(data).__name__}"
        expected = "a COCO object with images, annotations and categories"
        raise LabelError(path, None, found, expected=expected, hint="fix the file")
    cats = data["categories"]
    for k, c in enumerate(cats):
        if not (isinstance(c, dict) and isinstance(c.get("id"), int) and c.get("name") is not None):
            raise LabelError(path, f"categories[{k}]", f"{c!r}", expected="{id: int, name: str}", hint="fix the file")
    # Roboflow's exports list the other categories' supercategory as a category of its own (id 0, its own
    # supercategory "none") that no annotation uses: not a class. (COCO's own "person" is its own supercategory.)
    used = {a.get("category_id") for a in data.get("annotations") or [] if isinstance(a, dict)}
    parents = {c.get("supercategory") for c in cats if c.get("supercategory") != c["name"]}
    cats = [c for c in cats if c["id"] in used or c["name"] not in parents or c.get("supercategory") == c["name"]]
    return sorted(cats, key=lambda c: c["id"])


def _coco_image_dirs(path: Path) -> list[Path]:
    """Folders where an image's ``file_name`` is looked for, in order."""
    jdir = path.parent
    root = jdir.parent if jdir.name == "annotations" else jdir
    m = re.match(r"instances_([A-Za-z]+)(\w*)", path.stem)
    folders = list(dict.fromkeys([m[1] + m[2], m[1]])) if m else []
    return [jdir, *(root / "images" / f for f in folders), *(root / f for f in folders), root / "images"]


def _coco_image(
    path: Path, i: int, img: dict, anns: list[tuple[int, dict]], index: dict, dirs: list[Path]
) -> LabelledImage:
    where = f"images[{i}]"
    width, height, name = img.get("width"), img.get("height"), img.get("file_name")
    width, height = (int(v) if isinstance(v, float) and v.is_integer() else v for v in (width, height))  # 640.0
    sized = isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0
    if not (sized and isinstance(name, str) and name):
        found = f"file_name {name!r}, width {width!r}, height {height!r}"
        raise LabelError(path, where, found, expected="a file_name and a positive integer width and height")
    image = find_image(name, dirs)
    if image is None:
        looked = ", ".join(str(d) for d in dirs)
        raise LabelError(path, where, f"no image file {name!r} (looked in {looked})", expected="an image file")
    instances = [_coco_instance(path, j, ann, index, width, height) for j, ann in anns]
    return LabelledImage(image, width, height, instances)


def find_image(name: str, dirs: list[Path]) -> Path | None:
    """The image a label file names, absolute: ``name`` as written in the first of ``dirs`` that holds it, else its
    last component there (a path written on another machine, ``C:\\Users\\me\\data\\0001.jpg`` or
    ``/home/me/data/0001.jpg``, still finds ``0001.jpg`` where the labels keep images); None when nowhere."""
    base = re.split(r"[\\/]", name)[-1]
    names = [name, base] if base and base != name else [name]
    return next((_abs(d / n) for n in names for d in dirs if (d / n).is_file()), None)


def _coco_instance(path: Path, j: int, ann: dict, index: dict, width: int, height: int) -> Instance:
    where = f"annotations[{j}]"
    if ann.get("category_id") not in index:
        ids = ", ".join(map(str, index))
        raise LabelError(path, where, f"category_id {ann.get('category_id')!r}", expected=f"a category id in {ids}")
    bbox = ann.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
        raise LabelError(path, where, f"bbox {bbox!r}", expected="bbox [x, y, w, h], four numbers")
    x, y, w, h = bbox
    box = _check_box((x, y, x + w, y + h), width, height, path, where)
    seg = ann.get("segmentation")
    if seg is not None and not isinstance(seg, (list, dict)):
        raise LabelError(path, where, f"segmentation {seg!r}", expected="polygons [[x, y, …]] or an RLE dict")
    return Instance(index[ann["category_id"]], box, seg or None)


# --- Pascal VOC ---------------------------------------------------------------------------------------------------


def _open_voc(root: Path, skip_bad: bool) -> BoxDataset:
    skipped: list[tuple[str, str]] = []
    parsed = {
        split: _collect(items, lambda item: _read_voc_xml(root, *item), skip_bad, skipped)
        for split, items in _voc_split_items(root).items()
    }
    classes = sorted({name for images in parsed.values() for _, names in images for name in names})
    splits = {}
    for split, images in parsed.items():
        for image, names in images:
            for inst, name in zip(image.instances, names):
                inst.label = classes.index(name)
        splits[split] = [image for image, _ in images]
    return BoxDataset(classes, splits, str(root), "voc", skipped)


def _voc_split_items(root: Path) -> dict[str, list[tuple[Path, Path | None, int | None]]]:
    """(xml, list file, line) per split: ``ImageSets/Main/{train|trainval,val,test}.txt`` when present, else all."""
    ann, main = root / "Annotations", root / "ImageSets" / "Main"
    lists = {s: main / f"{s}.txt" for s in SPLITS}
    if not lists["train"].is_file():
        lists["train"] = main / "trainval.txt"
    lists = {s: f for s, f in lists.items() if f.is_file()}
    if not lists:
        return {"all": [(_abs(f), None, None) for f in sorted(ann.glob("*.xml"))]}
    out = {}
    for split, f in lists.items():
        lines = enumerate(read_label_text(f).splitlines(), 1)
        out[split] = [(_abs(ann / f"{s.split()[0]}.xml"), f, n) for n, s in lines if s.strip()]
    return out


def _read_voc_xml(root: Path, xml: Path, list_file: Path | None, line: int | None) -> tuple[LabelledImage, list[str]]:
    """One annotation file -> the image (labels not yet assigned) and the class name of each object."""
    if not xml.is_file():
        raise LabelError(list_file or xml, line, f"no annotation file {xml}", expected="an annotation for each image")
    text = read_label_text(xml)
    try:
        doc = ET.fromstring(text)
    except ET.ParseError as e:
        raise LabelError(xml, e.position[0], f"malformed XML ({e})", expected="well-formed XML") from None
    image = _voc_image_file(root, xml, doc)
    width, height = _voc_size(doc, image)
    object_lines = [text.count("\n", 0, m.start()) + 1 for m in re.finditer(r"<object[\s>]", text)]
    instances, names = [], []
    for k, obj in enumerate(doc.findall("object")):
        name, box = _voc_object(obj, xml, object_lines[k] if k < len(object_lines) else None, width, height)
        instances.append(Instance(-1, box))
        names.append(name)
    return LabelledImage(image, width, height, instances), names


def _voc_image_file(root: Path, xml: Path, doc: ET.Element) -> Path:
    """``JPEGImages/<filename>``, else any image in ``JPEGImages/`` with the annotation's stem."""
    folder, name = root / "JPEGImages", (doc.findtext("filename") or "").strip()
    if name and (folder / name).is_file():
        return _abs(folder / name)
    same_stem = sorted(f for f in folder.glob(f"{xml.stem}.*") if f.suffix.lower() in IMAGE_SUFFIXES)
    if same_stem:
        return _abs(same_stem[0])
    raise LabelError(xml, None, f"no image {name or xml.stem + '.*'} in {folder}", expected="the annotated image")


def _voc_size(doc: ET.Element, image: Path) -> tuple[int, int]:
    """``<size>`` when it is there and positive (some tools write 0), else the image header."""
    try:
        width, height = int(doc.findtext("size/width") or 0), int(doc.findtext("size/height") or 0)
    except ValueError:
        width = height = 0
    return (width, height) if width > 0 and height > 0 else image_size(image)


def _voc_object(obj: ET.Element, xml: Path, line: int | None, width: int, height: int) -> tuple[str, tuple]:
    """Name and 0-based ``xyxy`` box of one ``<object>`` (VOC's pixels are 1-based: x1 = xmin - 1, x2 = xmax)."""
    name = (obj.findtext("name") or "").strip()
    if not name:
        raise LabelError(xml, line, "an object without a <name>", expected="<name>class</name>")
    try:
        xmin, ymin, xmax, ymax = (float(obj.findtext(f"bndbox/{k}") or "") for k in ("xmin", "ymin", "xmax", "ymax"))
    except ValueError:
        raise LabelError(xml, line, "a <bndbox> with a missing or non-number value", expected="numbers") from None
    return name, _check_box((xmin - 1, ymin - 1, xmax, ymax), width, height, xml, line)


# --- CSV ----------------------------------------------------------------------------------------------------------


def _open_csv(path: Path, skip_bad: bool) -> BoxDataset:
    """One CSV file (``path``), or a folder of Roboflow's per-split ``_annotations.csv`` files (:func:`_csv_files`)."""
    files = _csv_files(path) if path.is_dir() else {"": path}
    groups: dict[tuple[str, str, Path], list[tuple[int, dict]]] = {}
    for split, f in files.items():
        found = _csv_groups(f)
        groups.update({(split or s, name, f): rows for (s, name), rows in found.items()})
    labels = {(row["label"] or "").strip() for rows in groups.values() for _, row in rows}
    classes = sorted(labels - {""})
    skipped: list[tuple[str, str]] = []

    def read(item: tuple[tuple[str, str, Path], list[tuple[int, dict]]]) -> tuple[str, LabelledImage]:
        (split, name, f), rows = item
        return split, _csv_image(f, name, rows, classes)

    splits: dict[str, list[LabelledImage]] = {}
    for split, image in _collect(groups.items(), read, skip_bad, skipped):
        splits.setdefault(split, []).append(image)
    order = [*SPLITS, "all"]
    return BoxDataset(classes, {s: splits[s] for s in order if s in splits}, str(path), "csv", skipped)


def _csv_files(folder: Path) -> dict[str, Path]:
    """Roboflow's "TensorFlow Object Detection CSV" export: ``{train,valid,test}/_annotations.csv`` with the images
    beside each (``{"all": …}`` for one such folder given alone); empty when there is none."""
    if (folder / ROBOFLOW_CSV).is_file():
        return {"all": folder / ROBOFLOW_CSV}
    return _split_folders(folder, ROBOFLOW_CSV)


def _csv_groups(path: Path) -> dict[tuple[str, str], list[tuple[int, dict]]]:
    """Rows grouped by (split, path) in order of first appearance, with their line numbers. The columns of
    TensorFlow's object detection CSV (``filename,class,xmin,ymin,xmax,ymax``, with ``width,height`` that are not
    needed) are read as ``path``, ``label`` and box corners."""
    groups: dict[tuple[str, str], list[tuple[int, dict]]] = defaultdict(list)
    with io.StringIO(read_label_text(path), newline="") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        corners = not set(CSV_COLUMNS) <= set(columns) and set(CSV_CORNERS) <= set(columns)
        if not (corners or set(CSV_COLUMNS) <= set(columns)):
            expected = (
                "a header with the columns path,label,x,y,w,h (and optionally split), or"
                " filename,class,xmin,ymin,xmax,ymax"
            )
            raise LabelError(path, 1, f"columns {columns}", expected=expected, hint="fix the header")
        reader.fieldnames = [{"filename": "path", "class": "label"}.get(c, c) for c in columns] if corners else columns
        for row in reader:
            split = (row.get("split") or "").strip() if "split" in columns else "all"
            groups[(split, (row["path"] or "").strip())].append((reader.line_num, row))
    return groups


def _csv_image(path: Path, name: str, rows: list[tuple[int, dict]], classes: list[str]) -> LabelledImage:
    for line, row in rows:
        if None in row or any(v is None for v in row.values()):
            raise LabelError(path, line, "a row with the wrong number of fields", expected="one value per column")
    first_line, first = rows[0]
    split = (first.get("split") or "").strip() if "split" in first else "all"
    if split not in (SPLITS if "split" in first else ("all",)):
        raise LabelError(path, first_line, f"split {split!r}", expected="a split among train, val, test")
    image = find_image(name, [path.parent]) if name else None
    if image is None:
        raise LabelError(path, first_line, f"no image file {_abs(path.parent / name)}", expected="an image file")
    width, height = image_size(image)
    instances = [i for line, row in rows if (i := _csv_instance(path, line, row, width, height, classes))]
    return LabelledImage(image, width, height, instances)


def _csv_instance(path: Path, line: int, row: dict, width: int, height: int, classes: list[str]) -> Instance | None:
    """One row -> an Instance, or None for a row with only a path (an image with no objects)."""
    keys = ("x", "y", "w", "h") if "x" in row else ("xmin", "ymin", "xmax", "ymax")
    label, coords = row["label"].strip(), [row[k].strip() for k in keys]
    if not label and not any(coords):
        return None
    try:
        a, b, c, d = (float(v) for v in coords)
    except ValueError:
        raise LabelError(path, line, f"{', '.join(keys)} = {coords}", expected="four numbers") from None
    if not label:
        raise LabelError(path, line, "an empty label", expected="a class name")
    box = (a, b, a + c, b + d) if keys[0] == "x" else (a, b, c, d)
    return Instance(classes.index(label), _check_box(box, width, height, path, line))


# --- writers ------------------------------------------------------------------------------------------------------


def _place_image(src: Path, dst: Path) -> Path:
    """Make ``src`` available at ``dst``: nothing when it is already there, else a hard link, else a copy."""
    if dst.exists() and os.path.samefile(src, dst):
        return _abs(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return _abs(dst)


def _check_unique(names: list[str], where: Path) -> None:
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise CnnkitError(f"expected distinct image file names in {str(where)!r}, found {dup!r} twice; rename one")


def _num(v: float) -> str:
    """A pixel coordinate as text: whole numbers without decimals, others to 1e-4."""
    return f"{v:.4f}".rstrip("0").rstrip(".")


def write_yolo(
    root: str | Path,
    classes: Sequence[str],
    splits: Mapping[str, Sequence[LabelledImage]],
    *,
    hflip: bool | None = None,
) -> Path:
    """Write a YOLO dataset: ``images/<split>/`` (linked or copied there unless already in place),
    ``labels/<split>/<stem>.txt`` (``class cx cy w h`` normalised) and ``data.yaml``, written last and atomically.

    A split named ``all`` is written as ``train``. Segmentations are not written (boxes only).

    Returns:
        The path of ``data.yaml``, for :func:`open_box_dataset`.
    """
    root = Path(root)
    entries = {}
    for split, images in splits.items():
        key = "train" if split == "all" else split
        _check_unique([im.path.name for im in images], root / "images" / key)
        for im in images:
            dst = _place_image(im.path, root / "images" / key / im.path.name)
            lines = [_yolo_line(inst, im.width, im.height) for inst in im.instances]
            (root / "labels" / key).mkdir(parents=True, exist_ok=True)
            ultralytics_label_path(dst).write_text("".join(lines))
        entries[key] = f"images/{key}"
    cfg = {"path": ".", **entries, "names": dict(enumerate(classes))}
    if hflip is not None:
        cfg["hflip"] = bool(hflip)
    return write_text(root / "data.yaml", yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))


def _yolo_line(inst: Instance, width: int, height: int) -> str:
    x1, y1, x2, y2 = inst.box
    cx, cy, w, h = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height
    return f"{inst.label} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n"


def write_coco(root: str | Path, classes: Sequence[str], splits: Mapping[str, Sequence[LabelledImage]]) -> Path:
    """Write ``annotations/instances_<split>.json`` per split, images in ``images/<split>/`` (linked if elsewhere).

    Category ids are 1..K. A bool mask ``[H, W]`` as an instance's segmentation is written as RLE (pycocotools);
    polygons and RLE dicts are written as they are. ``area`` is the mask's, else the box's.

    Returns:
        The ``annotations`` folder (its splits), or the one JSON file when the only split is ``all``.
    """
    root = Path(root)
    written = []
    for split, images in splits.items():
        _check_unique([im.path.name for im in images], root / "images" / split)
        doc: dict[str, Any] = {"info": {"description": "written by cnnkit"}, "images": [], "annotations": []}
        doc["categories"] = [{"id": k + 1, "name": name, "supercategory": ""} for k, name in enumerate(classes)]
        for i, im in enumerate(images, 1):
            dst = _place_image(im.path, root / "images" / split / im.path.name)
            doc["images"].append({"id": i, "file_name": dst.name, "width": im.width, "height": im.height})
            for inst in im.instances:
                doc["annotations"].append(_coco_annotation(inst, len(doc["annotations"]) + 1, i, im))
        written.append(write_text(root / "annotations" / f"instances_{split}.json", json.dumps(doc)))
    return written[0] if list(splits) == ["all"] else root / "annotations"


def _coco_annotation(inst: Instance, ann_id: int, image_id: int, im: LabelledImage) -> dict:
    x1, y1, x2, y2 = inst.box
    seg, area = _coco_segmentation(inst.segmentation, im.height, im.width)
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": inst.label + 1,
        "bbox": [x1, y1, x2 - x1, y2 - y1],
        "area": area if area is not None else (x2 - x1) * (y2 - y1),
        "iscrowd": 0,
        "segmentation": seg,
    }


def _coco_segmentation(seg: Any, height: int, width: int) -> tuple[Any, float | None]:
    """A segmentation as JSON (a bool mask becomes compressed RLE) and its area in pixels (None without one)."""
    if seg is None or (isinstance(seg, list) and not seg):
        return [], None
    from pycocotools import mask as mask_utils

    if isinstance(seg, np.ndarray):
        rle = mask_utils.encode(np.asfortranarray(seg.astype(np.uint8)))
        area = float(mask_utils.area(rle))
        return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}, area
    if isinstance(seg, dict):
        rle = seg if isinstance(seg["counts"], (str, bytes)) else mask_utils.frPyObjects(seg, *seg["size"])
        return seg, float(mask_utils.area(rle))
    return seg, float(mask_utils.area(mask_utils.merge(mask_utils.frPyObjects(seg, height, width))))


def write_voc(root: str | Path, classes: Sequence[str], splits: Mapping[str, Sequence[LabelledImage]]) -> Path:
    """Write a Pascal VOC folder: ``JPEGImages/`` (linked or copied), ``Annotations/<id>.xml`` (1-based pixels) and
    ``ImageSets/Main/<split>.txt``. Ids are ``<split>_<stem>`` (``<stem>`` for the split ``all``).

    Returns:
        ``root``, for :func:`open_box_dataset`.
    """
    root = Path(root)
    for split, images in splits.items():
        ids = [im.path.stem if split == "all" else f"{split}_{im.path.stem}" for im in images]
        _check_unique(ids, root / "JPEGImages")
        for image_id, im in zip(ids, images):
            dst = _place_image(im.path, root / "JPEGImages" / f"{image_id}{im.path.suffix}")
            (root / "Annotations").mkdir(parents=True, exist_ok=True)
            ET.ElementTree(_voc_xml(dst.name, im, classes)).write(root / "Annotations" / f"{image_id}.xml", "unicode")
        if split != "all":
            write_text(root / "ImageSets" / "Main" / f"{split}.txt", "".join(f"{i}\n" for i in ids))
    return root


def _voc_xml(filename: str, im: LabelledImage, classes: Sequence[str]) -> ET.Element:
    doc = ET.Element("annotation")
    ET.SubElement(doc, "folder").text = "JPEGImages"
    ET.SubElement(doc, "filename").text = filename
    size = ET.SubElement(doc, "size")
    for key, value in (("width", im.width), ("height", im.height), ("depth", 3)):
        ET.SubElement(size, key).text = str(value)
    for inst in im.instances:
        obj = ET.SubElement(doc, "object")
        for key, value in (("name", classes[inst.label]), ("pose", "Unspecified"), ("truncated", "0")):
            ET.SubElement(obj, key).text = value
        ET.SubElement(obj, "difficult").text = "0"
        box = ET.SubElement(obj, "bndbox")
        x1, y1, x2, y2 = inst.box
        for key, value in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(box, key).text = _num(value)
    ET.indent(doc)
    return doc


def write_csv(path: str | Path, classes: Sequence[str], splits: Mapping[str, Sequence[LabelledImage]]) -> Path:
    """Write one CSV ``path,label,x,y,w,h[,split]`` (paths relative to its folder; one row per object, a row with
    only the path for an image without objects), atomically. The ``split`` column is left out for ``all`` alone.

    Returns:
        ``path``, for :func:`open_box_dataset`.
    """
    path = Path(path)
    with_split = list(splits) != ["all"]
    rows = [[*CSV_COLUMNS, "split"] if with_split else list(CSV_COLUMNS)]
    for split, images in splits.items():
        for im in images:
            rel = os.path.relpath(im.path, _abs(path.parent))
            for inst in im.instances or [None]:
                x1, y1, x2, y2 = inst.box if inst else (0.0, 0.0, 0.0, 0.0)
                row = [rel, classes[inst.label], _num(x1), _num(y1), _num(x2 - x1), _num(y2 - y1)] if inst else [rel]
                row += [""] * (len(CSV_COLUMNS) - len(row))
                rows.append([*row, split] if with_split else row)

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows(rows)

    return atomic_write(path, write)


WRITERS = {"yolo": write_yolo, "coco": write_coco, "voc": write_voc, "csv": write_csv}
