"""``cnnkit evaluate`` for classification runs: each run alone, or their ensemble, with TTA, saved predictions
and a top-loss gallery; the terminal summary and the JSON-ready metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data.splits import describe_split, record_name
from ..errors import CnnkitError
from ..io import json_safe, write_json
from .ensemble import Evaluation, evaluate
from .tables import confused_table, per_class_table, summary_table, text_table


def evaluate_run(run: str | Path, data: str | None = None, split: str = "test", data_dir: str | None = None) -> dict:
    """Metrics of the run's best weights on ``split`` of its dataset (or of ``data``); see ``metrics.score``."""
    return evaluate([run], data, split, data_dir).metrics()


def evaluate_command(
    runs: list[str],
    *,
    data: str | None = None,
    split: str = "test",
    data_dir: str | None = None,
    ensemble: bool = False,
    ensemble_mode: str = "prob",
    tta: bool = False,
    predictions: str | None = None,
    gallery: str | None = None,
    device: str = "cpu",
) -> list[tuple[dict[str, Any], str]]:
    """Evaluate each run (or, with ``ensemble``, their average) on ``device``: a (metrics, terminal text) pair per
    result.

    Writes ``RUN/eval_<split>.json`` (:func:`~cnnkit.data.splits.record_name`) for each single run, and the
    predictions file and gallery when asked.
    """
    if (predictions or gallery) and len(runs) > 1 and not ensemble:
        raise CnnkitError(
            f"expected one run or --ensemble with --predictions/--gallery, found {len(runs)} runs;"
            " evaluate them one at a time or add --ensemble"
        )
    groups = [runs] if ensemble else [[r] for r in runs]
    results = []
    for group in groups:
        evaluation = evaluate(group, data, split, data_dir, ensemble=ensemble, mode=ensemble_mode, tta=tta,
                              device=device)  # fmt: skip
        m = evaluation.metrics()
        if m["n"] == 0:
            where = describe_split(m["split"], repr(m["data"]))
            raise CnnkitError(f"expected images to evaluate ({where}), found none")
        lines = [format_metrics(m), *save_outputs(evaluation, predictions, gallery)]
        if not ensemble:
            write_json(Path(group[0]) / record_name(m["split"], data), json_safe(m))
        results.append((m, "\n".join(lines)))
    return results


def save_outputs(evaluation: Evaluation, predictions: str | None, gallery: str | None) -> list[str]:
    """Write the per-example predictions and the top-loss gallery when asked; the lines that say so."""
    from .analysis import write_gallery
    from .predictions import save_predictions

    ev, said = evaluation.eval_set, []
    if predictions:
        save_predictions(predictions, ev.ids, ev.labels, evaluation.headline(), ev.classes)
        said.append(f"  predictions saved to {predictions}")
    if gallery:
        write_gallery(evaluation, gallery)
        said.append(f"  top-loss gallery saved to {gallery}")
    return said


def format_metrics(m: dict[str, Any]) -> str:
    """The terminal summary: one line per model, then per-class results and confusions of the headline model."""
    head = m.get("ensemble", m)
    head = head.get("tta", head)
    lines = [f"{describe_split(m['split'], m['data'])}: {m['n']} images, {len(head['per_class'])} classes"]
    if m["excluded"]:
        lines.append(
            f"  ({m['excluded']} of {m['n'] + m['excluded']} images left out: one of the runs trained on them)"
        )
    lines += [text_table(summary_table(m)), f"  (top-5 is top-{head['top5_k']})" if head["top5_k"] != 5 else ""]
    lines += ["per class:", text_table(per_class_table(head))]
    if head["most_confused"]:
        lines += ["most confused:", text_table(confused_table(head))]
    return "\n".join(line for line in lines if line)
