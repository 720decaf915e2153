"""Named datasets and folders -> train / val / test splits of uint8 images with class names.

``load_data(cfg, ...)`` is the one entry point. Splits hold uint8 ``Tensor[C, H, W]`` images; conversion to
float and normalisation happen batch-wise in the engine (cheaper than per image).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from ..config import DataConfig
from ..errors import CnnkitError
from . import fashion_mnist
from .augment import NOT_MIRRORABLE
from .folder import FolderIndex, build_split, index_folder, infer_channels
from .idx import is_idx_folder, load_idx_folder

NAMED = ("fashion-mnist", "digits")


def native_size(name: str) -> bool:
    """Whether dataset ``name`` has one image size of its own, kept unless ``data.image_size`` is set: the named
    datasets and IDX folders (:mod:`cnnkit.data.idx`); an image folder needs a size."""
    return name in NAMED or is_idx_folder(name)


def mirrorable(cfg: DataConfig) -> bool:
    """Whether a left-right mirrored image still shows the same class: ``data.hflip`` when set, else False for
    handwriting (``digits``, and IDX folders: MNIST's format) and True for everything else. Augmentation and flip
    TTA both obey it."""
    if cfg.hflip is not None:
        return cfg.hflip
    return cfg.name not in NOT_MIRRORABLE and not is_idx_folder(cfg.name)


class TensorImages(Dataset):
    """Images held in memory: ``images`` uint8 Tensor[N, C, H, W], ``labels`` int64 Tensor[N].

    ``ids`` names each example where it came from (a file path, or ``"train:123"`` for an index into a named
    dataset's arrays): the run directory's ``split.json`` records them.
    """

    def __init__(self, images: Tensor, labels: Tensor, ids: list | None = None) -> None:
        if images.ndim != 4 or images.dtype != torch.uint8 or len(images) != len(labels):
            raise ValueError(f"expected uint8 images [N, C, H, W] and N labels, found {tuple(images.shape)}")
        self.images, self.labels = images, labels.long()
        self.ids = list(ids) if ids is not None else list(range(len(labels)))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.images[i], int(self.labels[i])

    def take(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """A batch of examples ``idx`` Tensor[B]: (uint8 images Tensor[B, C, H, W], labels Tensor[B])."""
        return self.images[idx], self.labels[idx]

    def subset(self, idx: np.ndarray | Tensor) -> TensorImages:
        idx = torch.as_tensor(idx, dtype=torch.long)
        return TensorImages(self.images[idx], self.labels[idx], [self.ids[i] for i in idx.tolist()])

    def resized(self, size: tuple[int, int]) -> TensorImages:
        """Resize every image once (antialiased bilinear), for models that need another input size."""
        if tuple(self.images.shape[2:]) == tuple(size):
            return self
        out = [F.interpolate(b.float(), size=size, mode="bilinear", antialias=True) for b in self.images.split(1024)]
        return TensorImages(torch.cat(out).round().clamp(0, 255).to(torch.uint8), self.labels, self.ids)

    def digest(self) -> str:
        """A content hash of the pixels and labels, in order."""
        h = hashlib.blake2b(digest_size=16)
        h.update(self.images.numpy().tobytes())
        h.update(self.labels.numpy().tobytes())
        return h.hexdigest()


@dataclass
class DataSplits:
    """What the engine needs from a dataset."""

    train: Dataset
    val: Dataset
    test: Dataset
    classes: list[str]
    in_chans: int
    image_size: tuple[int, int]
    source: str
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) of skipped bad files
    hflip: bool = True  # whether a mirrored image still shows the same thing (False for digits and text)

    def train_labels(self) -> Tensor:
        """Labels of the training split, Tensor[N]."""
        return torch.from_numpy(labels_of(self.train)).long()

    def split_record(self) -> tuple[dict[str, Any], dict[str, list]]:
        """(per split: size and content hash, for the run card; per split: the example ids, for split.json)."""
        summary, members = {}, {}
        for name in ("train", "val", "test"):
            ds = getattr(self, name)
            summary[name] = {"n": len(ds), "digest": digest_of(ds)}
            members[name] = [str(i) for i in ids_of(ds)]
        return summary, members


def ids_of(ds: Dataset) -> list:
    """Where each example came from: file paths for folder data, indices (or ``"train:i"``) for named data."""
    if hasattr(ds, "ids"):
        return list(ds.ids)
    return [str(p) for p, *_ in ds.files]  # ImageFiles


def digest_of(ds: Dataset) -> str:
    """A content hash of a split: its pixels and targets in memory, else the bytes of its files."""
    if hasattr(ds, "digest"):
        return ds.digest()
    h = hashlib.blake2b(digest_size=16)
    for path, label in ds.files:
        h.update(Path(path).read_bytes())
        h.update(str(label).encode())
    return h.hexdigest()


def labels_of(ds: Dataset) -> np.ndarray:
    if isinstance(ds, TensorImages):
        return ds.labels.numpy()
    return np.array([lbl for _, lbl in ds.files])  # ImageFiles


def split_indices(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``range(len(labels))`` into (keep, held_out), stratified when every class allows it.
    ``fraction`` 1 holds all of it out: new data that a trained run is evaluated on (the config allows < 1)."""
    idx = np.arange(len(labels))
    n_out = round(len(labels) * fraction)
    if fraction >= 1:
        return idx[:0], idx
    if fraction <= 0 or n_out == 0:
        return idx, idx[:0]
    if n_out >= len(labels):
        raise CnnkitError(f"expected a split fraction that leaves training images, found {fraction} of {len(labels)}")
    from sklearn.model_selection import train_test_split  # here: scikit-learn takes 1.4 s to import (predict, serve)

    counts = np.bincount(labels)
    ok = counts[counts > 0].min() >= 2 and n_out >= (counts > 0).sum() and len(labels) - n_out >= (counts > 0).sum()
    return train_test_split(idx, test_size=n_out, random_state=seed, stratify=labels if ok else None)


def _tensor_splits(arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, TensorImages]:
    """IDX-style arrays {split: (images uint8 [N, H, W], labels [N])} -> TensorImages with ids "split:i"."""
    ids = {k: [f"{k}:{i}" for i in range(len(y))] for k, (_, y) in arrays.items()}
    return {k: TensorImages(torch.from_numpy(x.copy())[:, None], torch.from_numpy(y.copy()), ids[k])
            for k, (x, y) in arrays.items()}  # fmt: skip


def _fashion_mnist(cfg: DataConfig) -> tuple[TensorImages, TensorImages | None, list[str]]:
    made = _tensor_splits(fashion_mnist.load(cfg.data_dir, allow_download=cfg.download))
    return made["train"], made["test"], list(fashion_mnist.CLASSES)


def _idx(cfg: DataConfig) -> tuple[TensorImages, TensorImages | None, list[str]]:
    arrays, classes = load_idx_folder(cfg.name)
    made = _tensor_splits(arrays)
    return made["train"], made.get("test"), classes


def _digits(cfg: DataConfig) -> tuple[TensorImages, None, list[str]]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.from_numpy(np.clip(d.images * 16, 0, 255).astype(np.uint8))[:, None]  # 0–16 -> 0–255
    return TensorImages(images, torch.from_numpy(d.target)), None, [str(c) for c in d.target_names]


def _named(cfg: DataConfig, seed: int, size: tuple[int, int] | None) -> DataSplits:
    loader = {"fashion-mnist": _fashion_mnist, "digits": _digits}.get(cfg.name, _idx)
    full, test, classes = loader(cfg)
    if test is None:
        keep, held = split_indices(full.labels.numpy(), cfg.test_fraction, seed)
        full, test = full.subset(keep), full.subset(held)
    keep, held = split_indices(full.labels.numpy(), cfg.val_fraction, seed)
    train, val = full.subset(keep), full.subset(held)
    size = size or tuple(train.images.shape[2:])
    return DataSplits(
        *(s.resized(size) for s in (train, val, test)), classes, int(train.images.shape[1]), size, cfg.name,
        hflip=mirrorable(cfg),
    )  # fmt: skip


def _carve(files: dict[str, list], source: str, target: str, fraction: float, seed: int) -> dict[str, list]:
    """Move a seeded, stratified ``fraction`` of ``files[source]`` into ``files[target]``."""
    labels = np.array([lbl for _, lbl in files[source]])
    keep, held = split_indices(labels, fraction, seed)
    return {**files, source: [files[source][i] for i in keep], target: [files[source][i] for i in held]}


def folder_splits(index: FolderIndex, cfg: DataConfig, seed: int) -> dict[str, list]:
    """(path, label) lists per split of an indexed folder: its own train/val/test folders, or carved from it by
    the seeded, stratified fractions (``test_fraction`` 1: all of it is test, see :func:`split_indices`)."""
    files = index.files
    if "all" in files:
        files = _carve({"train": files["all"]}, "train", "test", cfg.test_fraction, seed)
    if "val" not in files:
        files = _carve(files, "train", "val", cfg.val_fraction, seed)
    return files


def _folder(cfg: DataConfig, seed: int, size: tuple[int, int], content: dict[str, Any] | None = None,
            classes: list[str] | None = None) -> DataSplits:  # fmt: skip
    index = index_folder(cfg.name, classes)
    in_chans = 1 if content else infer_channels(index)  # a grey run's look: its images are grey
    files = folder_splits(index, cfg, seed)
    skipped: list[tuple[str, str]] = []
    splits = {}
    for split in ("train", "val", "test"):
        if files.get(split):
            splits[split] = build_split(files[split], in_chans, size, cfg.skip_bad, skipped, TensorImages, content)
        else:
            splits[split] = TensorImages(torch.zeros(0, in_chans, *size, dtype=torch.uint8), torch.zeros(0))
    source = str(Path(cfg.name).resolve())
    return DataSplits(
        **splits, classes=index.classes, in_chans=in_chans, image_size=size, source=source, skipped=skipped,
        hflip=mirrorable(cfg),
    )  # fmt: skip


def load_data(cfg: DataConfig, seed: int = 0, image_size: tuple[int, int] | None = None,
              content: dict[str, Any] | None = None, classes: list[str] | None = None) -> DataSplits:  # fmt: skip
    """Load ``cfg.name`` (a named dataset or a folder) into train / val / test splits.

    Args:
        cfg: the ``data`` section of the run config.
        seed: seeds the stratified validation (and, for folders without one, test) split.
        image_size: (H, W) to resize to; named datasets keep their native size when ``None``,
            folders need one.
        content: a grey run's look (``model.json``'s ``preprocessing.content``): a folder's images, read grey,
            are brought to it (:func:`cnnkit.data.content.fit_content`), as ``predict`` brings one image.
        classes: for a folder, label its class folders by these names (see :func:`index_folder`).
    """
    if native_size(cfg.name):
        return _named(cfg, seed, image_size)
    if image_size is None:
        raise ValueError("folder datasets need an image_size")
    return _folder(cfg, seed, image_size, content, classes)
