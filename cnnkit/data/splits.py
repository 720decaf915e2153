"""The split a run was trained and selected on, checked again before anything reuses it.

Training saves, per split, the ids of its examples (``split.json``: file paths, or indices into a named
dataset) and a content hash of their pixels and targets (the run card's ``split``). ``evaluate``, ``report``,
ensembles and ``--resume`` rebuild the split from the run's own config, which is seeded, and compare: when
the data changed since training (a file added, removed or edited), they say so in one line instead of quietly
scoring a different split that may hold training images.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sized
from pathlib import Path
from typing import cast

from ..config import DataConfig
from ..errors import CnnkitError
from ..io import read_json
from ..runcard import SPLIT, RunCard
from .datasets import DataSplits, digest_of, ids_of

WHOLE = "all"  # the split name of new data evaluated whole (it had no train/val/test splits of its own)


def other_data(data: str | None, own: str) -> bool:
    """Whether ``data`` (``--data``) names other data than a run's ``own`` (paths compared resolved)."""
    if data is None or data == own:
        return False
    return not (Path(data).exists() and Path(own).exists() and Path(data).resolve() == Path(own).resolve())


def as_new_data(cfg: DataConfig) -> DataConfig:
    """``cfg`` for new data that a trained run is evaluated on: its own test split when it has one, else all of it
    (``test_fraction`` 1, which the config refuses for training)."""
    return dataclasses.replace(cfg, test_fraction=1.0, val_fraction=0.0)


def scored_split(data: DataSplits, split: str, new: bool) -> str:
    """The name of what is scored: ``split``, or :data:`WHOLE` for new data without splits (nothing to train on
    was carved from it); other splits of such data are refused in one line."""
    if not new or len(cast(Sized, data.train)):
        return split
    if split != "test":
        raise CnnkitError(
            f"expected --split test for {data.source!r}, found --split {split}; data without train/val/test"
            " splits is evaluated whole"
        )
    return WHOLE


def record_name(split: str, data: str | None) -> str:
    """The file in the run directory that keeps an evaluation: ``eval_<split>.json`` of the run's own data, and
    ``eval_<split>_<name>.json`` of ``--data`` (so scoring other data never replaces the run's own record)."""
    if data is None:
        return f"eval_{split}.json"
    name = Path(data).resolve().name if Path(data).exists() else data
    return f"eval_{split}_{re.sub(r'[^A-Za-z0-9._-]+', '_', name)[:60]}.json"


def describe_split(split: str, source: str | None = None) -> str:
    """How reports name the examples: "test split (of SOURCE)", or "every image (in SOURCE)" for new data scored
    whole."""
    if split == WHOLE:
        return f"every image in {source}" if source else "every image"
    return f"{split} split of {source}" if source else f"{split} split"


def check_split(card: RunCard, run_dir: str | Path, data: DataSplits, split: str, action: str = "evaluate") -> None:
    """Raise when ``split`` of ``data`` is not the one the run recorded (runs from before the record pass)."""
    saved = card.split.get(split)
    if not saved:
        return
    ds = getattr(data, split)
    if digest_of(ds) == saved["digest"]:
        return
    path = Path(run_dir) / SPLIT
    ids = {str(i) for i in ids_of(ds)}
    old = set(read_json(path).get(split, [])) if path.exists() else set()
    added, removed = len(ids - old), len(old - ids)
    what = f"{added} example(s) added, {removed} removed" if added or removed else "the same files with other content"
    raise CnnkitError(
        f"expected the {split} split the run was trained with ({saved['n']} examples of {card.data}), found"
        f" {what}; the data changed since training, so {action} would use other examples than the run's own"
        f" (some may have been trained on) — {FIXES.get(action, 'restore the data')}"
    )


FIXES = {
    "evaluate": "restore the data, or pass --data to evaluate on it deliberately",
    "resume": "restore the data, or train a new run on it",
}
