"""Runs to evaluate and the examples they are evaluated on.

Every run is scored on the same examples: the ``split`` of the first run's dataset (or of ``--data``), split
with the first run's seed and fractions, each run seeing it at its own input size. A run whose own split
differs (another seed, say: with scikit-learn's digits the seed also picks the test images) may have trained
on some of those images; they are found by content and left out for every run, so that an ensemble is never
credited for images one of its members learned. ``EvalSet.excluded`` counts them.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import Tensor
from torch.utils.data import Dataset, Subset

from ..config import Config, DataConfig, from_dict
from ..data import DataSplits, TensorImages, load_data, native_size
from ..data.datasets import folder_splits, labels_of
from ..data.folder import index_folder
from ..data.splits import as_new_data, check_split, other_data, scored_split
from ..errors import CnnkitError
from ..predict import Predictor


@dataclass
class Member:
    """One trained run: its predictor (model, classes, preprocessing) and its resolved config."""

    run: Path
    predictor: Predictor
    cfg: Config

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.predictor.size)


@dataclass
class EvalSet:
    """The examples every member is scored on.

    Attributes:
        labels: Tensor[N] true class indices.
        ids: N example ids: the index in the split, or the file path for folder datasets.
        datasets: input size (H, W) -> the N examples as uint8 images at that size.
        excluded: examples of the split left out because a member trained on them.
    """

    source: str
    split: str
    classes: list[str]
    labels: Tensor
    ids: list[int] | list[str]
    datasets: dict[tuple[int, int], Dataset]
    excluded: int = 0


def load_member(run: str | Path, device: str = "cpu") -> Member:
    """The run's predictor on ``device`` (``auto``, ``cpu``, ``cuda``) and its resolved config."""
    run = Path(run)
    predictor = Predictor.from_run(run, device)
    cfg_path = run / "config.yaml"
    cfg = from_dict(yaml.safe_load(cfg_path.read_text()) or {}) if cfg_path.exists() else from_dict({})
    return Member(run, predictor, cfg)


def load_eval_set(members: list[Member], data: str | None, split: str, data_dir: str | None) -> EvalSet:
    """The ``split`` examples for ``members`` (see the module docstring)."""
    ref = members[0].cfg
    data_cfg = dataclasses.replace(ref.data, name=data or ref.data.name, data_dir=data_dir or ref.data.data_dir)
    other = other_data(data, ref.data.name)
    if other:
        data_cfg = as_new_data(data_cfg)
    by_size: dict[tuple[int, int], DataSplits] = {}
    for m in members:
        if m.size not in by_size:  # other data than the run's own is brought to the look of the run's (grey runs)
            content = m.predictor.content if other else None
            by_size[m.size] = load_data(data_cfg, seed=ref.train.seed, image_size=m.size, content=content,
                                        classes=m.predictor.classes if other else None)  # fmt: skip
        _check_classes(m, by_size[m.size])
    first = by_size[members[0].size]
    if data is None:  # the run's own data: the split it recorded, or a clear refusal
        check_split(members[0].predictor.card, members[0].run, first, split)
    name = scored_split(first, split, other)
    full = getattr(first, split)
    keep = held_out(full, members, data_cfg, ref.train.seed, members[0].size)
    ids = split_ids(first, data_cfg, ref.train.seed, split)
    return EvalSet(
        source=first.source,
        split=name,
        classes=first.classes,
        labels=torch.as_tensor(labels_of(full)[keep], dtype=torch.long),
        ids=[ids[i] for i in keep],
        datasets={size: subset(getattr(s, split), keep) for size, s in by_size.items()},
        excluded=len(full) - len(keep),
    )


def _check_classes(member: Member, splits: DataSplits) -> None:
    if splits.classes != member.predictor.classes:
        raise CnnkitError(
            f"expected the classes of run {str(member.run)!r} ({', '.join(member.predictor.classes[:5])}…),"
            f" found {', '.join(splits.classes[:5])}… in {splits.source!r}; evaluate runs and data with the same"
            " classes"
        )


def subset(ds: Dataset, keep: np.ndarray) -> Dataset:
    """The examples ``keep`` int[M] of ``ds`` (``ds`` itself when nothing is left out)."""
    if len(keep) == len(ds):
        return ds
    return ds.subset(keep) if isinstance(ds, TensorImages) else Subset(ds, keep.tolist())


def _same_split(cfg: Config, data_cfg: DataConfig, seed: int) -> bool:
    a, b = cfg.data, data_cfg
    return (a.name, a.val_fraction, a.test_fraction, cfg.train.seed) == (b.name, b.val_fraction, b.test_fraction, seed)


def held_out(ds: Dataset, members: list[Member], data_cfg: DataConfig, seed: int, size: tuple[int, int]) -> np.ndarray:
    """Indices int[M] of the examples of ``ds`` that no member trained on (compared by pixel content)."""
    idx = np.arange(len(ds))
    others = [m for m in members if not _same_split(m.cfg, data_cfg, seed)]
    if not others or len(ds) == 0:
        return idx
    seen: set[bytes] = set()
    for m in others:
        own = load_data(m.cfg.data, seed=m.cfg.train.seed, image_size=size)
        seen.update(image_digests(own.train))
    return idx[np.array([d not in seen for d in image_digests(ds)], dtype=bool)]


def image_digests(ds: Dataset) -> list[bytes]:
    """A 16-byte digest of each image's uint8 pixels, in dataset order."""
    images = ds.images if isinstance(ds, TensorImages) else (ds[i][0] for i in range(len(ds)))
    return [hashlib.blake2b(img.numpy().tobytes(), digest_size=16).digest() for img in images]


def split_ids(splits: DataSplits, data_cfg: DataConfig, seed: int, split: str) -> list[int] | list[str]:
    """Each example's file path for folder datasets (when it can be recovered), else its index in the split."""
    ds = getattr(splits, split)
    if hasattr(ds, "files"):  # decoded on demand: the dataset keeps its paths
        return [str(p) for p, _ in ds.files]
    if not native_size(data_cfg.name):  # an image folder: its files
        skipped = {p for p, _ in splits.skipped}
        index = index_folder(data_cfg.name, splits.classes)  # the same labelling and carving load_data did
        files = [(p, lbl) for p, lbl in folder_splits(index, data_cfg, seed).get(split, []) if str(p) not in skipped]
        if [lbl for _, lbl in files] == labels_of(ds).tolist():
            return [str(p) for p, _ in files]
    return list(range(len(ds)))
