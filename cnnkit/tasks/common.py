"""What the box tasks share after training: a run's own split, checked, and ``cnnkit evaluate`` one run at a
time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import from_dict, load_yaml
from ..data import DataSplits
from ..data.splits import as_new_data, check_split, describe_split, other_data, record_name, scored_split
from ..errors import CnnkitError
from ..io import json_safe, write_json
from ..runcard import RunCard, read_card


def run_split(task: Any, run: str | Path, split: str, data: str | None = None) -> tuple[RunCard, DataSplits, Any, str]:
    """(card, all splits, the ``split`` dataset, what it is called) of a run: its own data, loaded as it trained
    (and checked against the split it recorded), or ``data`` at the run's input size, whose own test split is
    scored, or all of it when it has no splits (:func:`~cnnkit.data.splits.scored_split`); the classes must be the
    run's."""
    run = Path(run)
    card = read_card(run)
    cfg = from_dict(load_yaml(run / "config.yaml"))
    other = other_data(data, cfg.data.name)
    if data:
        cfg.data.name, cfg.data.image_size = data, card.input.height
    if other:
        cfg.data = as_new_data(cfg.data)
    splits = task.load_data(cfg)
    if data is None:
        check_split(card, run, splits, split)
    if splits.classes != card.classes:
        raise CnnkitError(f"expected the classes {card.classes[:5]}… of run {str(run)!r}, found {splits.classes[:5]}…")
    return card, splits, getattr(splits, split), scored_split(splits, split, other)


def split_metrics(ev: Any) -> dict[str, Any]:
    """``ev.metrics()`` of a box task's evaluation (``data``, ``split``, ``source``, ``metrics()``).

    Raises:
        CnnkitError: the split held no images.
    """
    if not len(ev.data):
        raise CnnkitError(f"expected images to evaluate ({describe_split(ev.split, repr(ev.source))}), found none")
    return ev.metrics()


# (metrics, extra lines) of one run, from its path and the evaluate options
EvaluateOne = Callable[[str], tuple[dict[str, Any], list[str]]]


def evaluate_each(
    task: str,
    runs: list[str],
    one: EvaluateOne,
    *,
    ensemble: bool,
    tta: bool,
    many_files: bool,
    data: str | None = None,
) -> list[tuple[dict[str, Any], str]]:
    """Evaluate ``runs`` one at a time with ``one``, writing each run's ``eval_<split>.json`` (the split its metrics
    name; :func:`~cnnkit.data.splits.record_name`: another name for ``data``).

    Args:
        task: the task's name, for the messages.
        one: run path -> (JSON-ready metrics, the lines to print).
        ensemble, tta: refused: averaging class scores says nothing about boxes.
        many_files: whether --predictions/--gallery were asked for (one run only, as they name one file).
    """
    if ensemble or tta:
        raise CnnkitError(f"expected no --ensemble or --tta for {task} runs (they average class scores), found one")
    if many_files and len(runs) > 1:
        raise CnnkitError(f"expected one run with --predictions/--gallery, found {len(runs)}; evaluate one at a time")
    results = []
    for run in runs:
        metrics, lines = one(run)
        write_json(Path(run) / record_name(metrics["split"], data), json_safe(metrics))
        results.append((metrics, "\n".join(lines)))
    return results
