"""What the box tasks share after training: ``cnnkit evaluate`` one run at a time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import CnnkitError
from ..io import json_safe, write_json

# (metrics, extra lines) of one run, from its path and the evaluate options
EvaluateOne = Callable[[str], tuple[dict[str, Any], list[str]]]


def evaluate_each(
    task: str, runs: list[str], one: EvaluateOne, *, split: str, ensemble: bool, tta: bool, many_files: bool
) -> list[tuple[dict[str, Any], str]]:
    """Evaluate ``runs`` one at a time with ``one``, writing each run's ``eval_<split>.json``.

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
        write_json(Path(run) / f"eval_{split}.json", json_safe(metrics))
        results.append((metrics, "\n".join(lines)))
    return results
