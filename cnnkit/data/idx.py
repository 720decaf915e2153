"""IDX files (LeCun's MNIST format): the format handwriting datasets ship in (MNIST, EMNIST, KMNIST, QMNIST,
Fashion-MNIST), read from a folder as they are downloaded.

A folder is an IDX dataset when it holds an images file and its labels file per split, gzip-compressed or not,
named as the datasets name them: ``train-images-idx3-ubyte.gz`` / ``train-labels-idx1-ubyte.gz`` and
``t10k-…`` (MNIST), ``train-images.idx3-ubyte`` (Kaggle's copy of MNIST), ``emnist-letters-train-images-idx3-ubyte.gz``
(EMNIST, one prefix per set). Class names: ``classes.txt`` (one per line) or EMNIST's ``<prefix>mapping.txt``
(label and character code) when present, else the label numbers.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np

from ..errors import CnnkitError

# <prefix><split>[-.]images[-.]idx3[-.]ubyte[.gz]; the labels file has "labels" and "idx1" in their places
_IMAGES = re.compile(r"^(?P<prefix>.*?)(?P<split>train|t10k|test)[-.]images[-.]idx3[-.]ubyte(?P<gz>\.gz)?$")
SPLIT_OF = {"train": "train", "t10k": "test", "test": "test"}


def read_idx(path: str | Path, hint: str = "check the file") -> np.ndarray:
    """Read an IDX file (gzip or raw) as a uint8 array: images ``[N, H, W]`` or labels ``[N]``; ``hint`` ends the
    error line of a file that can't be read."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise CnnkitError(f"expected a readable IDX file at {str(path)!r}, found {e}; {hint}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise CnnkitError(f"expected an unsigned-byte IDX file at {str(path)!r}, found another format")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise CnnkitError(f"expected {int(np.prod(dims))} values in {str(path)!r}, found {data.size}; it is truncated")
    return data.reshape(dims)


def idx_files(root: str | Path) -> tuple[str, dict[str, tuple[Path, Path]]]:
    """(the set's file-name prefix, split -> (images file, labels file)) of an IDX folder; an empty dict when
    ``root`` holds no IDX images file.

    Raises:
        CnnkitError: several sets in one folder (EMNIST's download holds six), or an images file without its
            labels file.
    """
    root = Path(root)
    found: dict[str, dict[str, tuple[Path, Path]]] = {}
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        m = _IMAGES.match(path.name)
        if not m or not path.is_file():
            continue
        labels = _labels_name(path.name)
        if not (root / labels).is_file():
            raise CnnkitError(f"expected {labels} beside {path.name} in {str(root)!r}, found none; add it")
        found.setdefault(m["prefix"], {})[SPLIT_OF[m["split"]]] = (path, root / labels)
    if len(found) > 1:
        names = ", ".join(p or "(no prefix)" for p in found)
        raise CnnkitError(
            f"expected one IDX dataset in {str(root)!r}, found {len(found)} ({names}); move the files of the one to"
            " use into a folder of their own"
        )
    if not found:
        return "", {}
    [(prefix, splits)] = found.items()
    if "train" not in splits:
        raise CnnkitError(f"expected a training images file ({prefix}train-images-idx3-ubyte) in {str(root)!r}, found"
                          f" only {', '.join(p.name for p, _ in splits.values())}")  # fmt: skip
    return prefix, splits


def _labels_name(images_name: str) -> str:
    return re.sub(r"images([-.])idx3", r"labels\1idx1", images_name, count=1)


def is_idx_folder(name: str) -> bool:
    """Whether ``name`` is a folder holding IDX images files (see the module docstring)."""
    root = Path(name)
    try:
        return root.is_dir() and any(_IMAGES.match(p.name) for p in root.iterdir())
    except OSError:  # a folder it may not list: not IDX files as far as it can tell (the folder reader says why)
        return False


def load_idx_folder(root: str | Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str]]:
    """({"train": (images uint8 [N, H, W], labels uint8 [N]), "test": … when the folder has it}, class names)."""
    root = Path(root)
    prefix, files = idx_files(root)
    arrays = {}
    for split, (images_file, labels_file) in files.items():
        images, labels = read_idx(images_file), read_idx(labels_file)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise CnnkitError(
                f"expected images [N, H, W] and N labels in {images_file.name} and {labels_file.name}, found shapes"
                f" {list(images.shape)} and {list(labels.shape)}"
            )
        arrays[split] = (images, labels)
    top = max(int(labels.max(initial=0)) for _, labels in arrays.values())
    return arrays, idx_classes(root, prefix, top + 1)


def idx_classes(root: Path, prefix: str, n: int) -> list[str]:
    """The names of labels 0…n−1: ``classes.txt``, else EMNIST's ``<prefix>mapping.txt``, else the numbers."""
    listed = root / "classes.txt"
    if listed.is_file():
        names = [line.strip() for line in listed.read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(names) < n:
            raise CnnkitError(f"expected at least {n} class names in {str(listed)!r} (labels go up to {n - 1}), found"
                              f" {len(names)}; add the missing ones")  # fmt: skip
        return names[:n]
    mapping = root / f"{prefix}mapping.txt"
    if mapping.is_file():
        rows = [line.split() for line in mapping.read_text().splitlines() if line.strip()]
        try:  # "label code" (EMNIST letters adds the lower-case code as a third column)
            codes = {int(row[0]): chr(int(row[1])) for row in rows}
        except (ValueError, OverflowError, IndexError):
            raise CnnkitError(f"expected lines 'label character-code' in {str(mapping)!r}, found others") from None
        return [codes.get(i, str(i)) for i in range(n)]
    return [str(i) for i in range(n)]
