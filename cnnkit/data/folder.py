"""Image-folder datasets: ``ROOT/CLASS/*.png`` or ``ROOT/{train,val,test}/CLASS/*.png`` (also named as other
tools name them: ``training``, ``valid`` / ``validation``, ``testing``).

Every file is decoded once up front, so a damaged file stops the run before training starts, with its
name; with ``skip_bad`` it is skipped and listed instead. Decoded images are kept in memory (uint8) when
they fit the memory budget, else decoded again on demand by DataLoader workers.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..errors import CnnkitError
from .images import GRAY_MODES, BadImageError, image_mode, load_image

SPLITS = ("train", "val", "test")
# the split folders' names as datasets and tools write them (Roboflow: valid; the MNIST PNG sets: training, testing)
SPLIT_FOLDERS = {"train": ("train", "training"), "val": ("val", "valid", "validation"), "test": ("test", "testing")}
# what operating systems leave in folders: macOS's zip resource forks, Windows' thumbnail caches and folder settings
SYSTEM_FOLDERS = ("__MACOSX",)
SYSTEM_FILES = ("Thumbs.db", "desktop.ini")
MEMORY_BUDGET = 1 << 30  # bytes of decoded uint8 pixels kept in memory


@dataclass
class FolderIndex:
    """Files and labels per split, found by :func:`index_folder`."""

    classes: list[str]
    files: dict[str, list[tuple[Path, int]]]  # split -> [(path, label)]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def _class_files(split_dir: Path, classes: list[str] | None) -> tuple[list[str], list[tuple[Path, int]]]:
    class_dirs = sorted(d for d in split_dir.iterdir() if d.is_dir() and not _system(d))
    if not class_dirs:
        raise CnnkitError(
            f"expected one sub-folder per class in {str(split_dir)!r}, found none; see `cnnkit train --help`"
        )
    names = classes or [class_name(d) for d in class_dirs]
    files = []
    for d in class_dirs:
        if class_name(d) not in names:
            raise CnnkitError(f"expected the classes {names} in {str(split_dir)!r}, found an extra folder {d.name!r}")
        if not os.access(d, os.R_OK | os.X_OK):
            raise CnnkitError(
                f"expected a class folder cnnkit may read, found {str(d)!r} unreadable; fix its permissions"
            )
        found = sorted(f for f in d.rglob("*") if f.is_file() and not any(map(_system, f.relative_to(d).parts)))
        if not found:
            raise CnnkitError(
                f"expected images in class folder {str(d)!r}, found an empty folder; add images or remove it"
            )
        files += [(f, names.index(class_name(d))) for f in found]
    return names, files


def _system(part: Path | str) -> bool:
    """Whether a file or folder name is the system's, not the data's: hidden (``.DS_Store``, macOS's ``._x.jpg``),
    :data:`SYSTEM_FOLDERS` or :data:`SYSTEM_FILES`."""
    name = Path(part).name
    return name.startswith(".") or name in SYSTEM_FOLDERS or name in SYSTEM_FILES


def _split_folder(root: Path, split: str) -> Path | None:
    """``root``'s folder for ``split`` under any of its names (:data:`SPLIT_FOLDERS`), in any case (Kaggle's copies
    write ``Training``/``Testing`` or ``TRAIN``/``TEST``; the lower-case name first when both exist), or None."""
    folders = sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: d.name != d.name.lower())
    return next((d for n in SPLIT_FOLDERS[split] for d in folders if d.name.lower() == n), None)


def class_name(folder: Path) -> str:
    """A class folder's name as text: bytes that are not UTF-8 become U+FFFD, so reports and CSVs can write it."""
    return os.fsencode(folder.name).decode("utf-8", errors="replace")


def index_folder(root: str | Path, classes: list[str] | None = None) -> FolderIndex:
    """Find classes and files; ``train/`` (``val/``, ``test/``, under any of their :data:`SPLIT_FOLDERS` names)
    sub-folders give the splits when present. System files and folders (:func:`_system`) are not data.

    ``classes``: label the class folders by these names (a trained run's), which the folder may hold some of;
    a folder of another name is refused. None: the class folders, sorted, are the classes."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise CnnkitError(
            f"expected a dataset name (fashion-mnist, digits) or a folder, found no folder at {str(root)!r}"
        )
    train = _split_folder(root, "train")
    if train is not None:
        classes, files = _class_files(train, classes)
        out = {"train": files}
        for split in SPLITS[1:]:
            if (folder := _split_folder(root, split)) is not None:
                out[split] = _class_files(folder, classes)[1]
        return FolderIndex(classes, out)
    classes, files = _class_files(root, classes)
    return FolderIndex(classes, {"all": files})


def infer_channels(index: FolderIndex) -> int:
    """1 when every image is grayscale, else 3. Files whose header can't be read are left to the decode pass."""
    for files in index.files.values():
        for path, _ in files:
            try:
                if image_mode(path) not in GRAY_MODES:
                    return 3
            except BadImageError:
                continue
    return 1


class ImageFiles(Dataset):
    """Decodes files on demand: item -> (uint8 Tensor[C, H, W], label)."""

    def __init__(self, files: list[tuple[Path, int]], in_chans: int, size: tuple[int, int],
                 content: dict[str, Any] | None = None) -> None:  # fmt: skip
        self.files, self.in_chans, self.size, self.content = files, in_chans, size, content

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        path, label = self.files[i]
        return load_image(path, self.in_chans, self.size, content=self.content), label


def decode_all(
    files: list[tuple[Path, int]],
    in_chans: int,
    size: tuple[int, int],
    skip_bad: bool,
    keep: bool,
    skipped: list[tuple[str, str]],
    desc: str = "checking images",
    content: dict[str, Any] | None = None,
) -> tuple[list[tuple[Path, int]], list[Tensor]]:
    """Decode every file once: the good ``files`` and, when ``keep``, their tensors (brought to ``content``'s look,
    see :func:`~cnnkit.data.images.load_image`). Bad files raise or are skipped."""
    good, tensors = [], []
    bar_off = True if len(files) < 500 else None  # None: tqdm shows it only on a terminal, not in a log file
    for path, label in tqdm(files, desc=desc, unit="img", leave=False, disable=bar_off):
        try:
            t = load_image(path, in_chans, size, content=content)
        except BadImageError as e:
            if not skip_bad:
                raise
            skipped.append((e.path, e.reason))
            continue
        good.append((path, label))
        if keep:
            tensors.append(t)
    return good, tensors


def fits_in_memory(n: int, in_chans: int, size: tuple[int, int]) -> bool:
    return n * in_chans * size[0] * size[1] <= MEMORY_BUDGET


def build_split(
    files: list[tuple[Path, int]],
    in_chans: int,
    size: tuple[int, int],
    skip_bad: bool,
    skipped: list[tuple[str, str]],
    tensor_dataset: Callable[[Tensor, Tensor, list[str]], Dataset],
    content: dict[str, Any] | None = None,
) -> Dataset:
    """Validate ``files`` and return an in-memory dataset when it fits, else an on-demand one (images brought to
    ``content``'s look when given)."""
    keep = fits_in_memory(len(files), in_chans, size)
    good, tensors = decode_all(files, in_chans, size, skip_bad, keep, skipped, content=content)
    if not good:
        raise CnnkitError("expected at least one readable image, found none; check the dataset folder")
    if keep:
        return tensor_dataset(torch.stack(tensors), torch.tensor([lbl for _, lbl in good]), [str(p) for p, _ in good])
    return ImageFiles(good, in_chans, size, content)
