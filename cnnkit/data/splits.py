"""The split a run was trained and selected on, checked again before anything reuses it.

Training saves, per split, the ids of its examples (``split.json``: file paths, or indices into a named
dataset) and a content hash of their pixels and targets (the run card's ``split``). ``evaluate``, ``report``,
ensembles and ``--resume`` rebuild the split from the run's own config, which is seeded, and compare: when
the data changed since training (a file added, removed or edited), they say so in one line instead of quietly
scoring a different split that may hold training images.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CnnkitError
from ..io import read_json
from ..runcard import SPLIT, RunCard
from .datasets import DataSplits, digest_of, ids_of


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
