"""``cnnkit evaluate RUN [RUN …]`` (metrics, ensembles, TTA, saved predictions) and ``cnnkit report RUN``."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from ..engine.checkpoint import write_json
from ..errors import CnnkitError
from .ensemble import MODES, Evaluation, evaluate
from .tables import confused_table, per_class_table, summary_table, text_table


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="top-1/top-5 error, per-class P/R/F1, ROC-AUC, confusion; ensembles and TTA",
        description="Evaluate runs on a split. Several runs: each alone, or with --ensemble their average.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories written by `cnnkit train`")
    _data_args(p)
    p.add_argument("--json", metavar="FILE", help="also write all metrics to FILE")
    p.add_argument("--predictions", metavar="FILE", help="save per-example labels and probabilities (.csv or .npz)")
    p.add_argument("--gallery", metavar="FILE", help="save a PNG of the top-loss images")
    p.add_argument("--ensemble", action="store_true", help="average the runs' predictions (runs share classes)")
    p.add_argument("--ensemble-mode", choices=MODES, default="prob", help="average probabilities or logits")
    p.add_argument("--tta", action="store_true", help="also average each image with its mirror image (not digits)")
    p.set_defaults(func=run_evaluate)
    r = sub.add_parser("report", help="write report.html and report.md (curves, confusion, per-class, gallery)")
    r.add_argument("run", help="run directory written by `cnnkit train`")
    _data_args(r)
    r.set_defaults(func=run_report)


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="dataset to evaluate on (default: the first run's own)")
    p.add_argument("--data-dir", help="where named datasets are looked for")
    p.add_argument("--split", choices=("test", "val", "train"), default="test")


def evaluate_run(run: str | Path, data: str | None = None, split: str = "test", data_dir: str | None = None) -> dict:
    """Metrics of the run's best weights on ``split`` of its dataset (or of ``data``); see ``metrics.score``."""
    return evaluate([run], data, split, data_dir).metrics()


def run_evaluate(args: argparse.Namespace) -> int:
    if (args.predictions or args.gallery) and len(args.runs) > 1 and not args.ensemble:
        raise CnnkitError(
            f"expected one run or --ensemble with --predictions/--gallery, found {len(args.runs)} runs;"
            " evaluate them one at a time or add --ensemble"
        )
    groups = [args.runs] if args.ensemble else [[r] for r in args.runs]
    results = []
    for runs in groups:
        evaluation = evaluate(
            runs, args.data, args.split, args.data_dir, ensemble=args.ensemble, mode=args.ensemble_mode, tta=args.tta
        )
        m = evaluation.metrics()
        if m["n"] == 0:
            raise CnnkitError(f"expected images in the {args.split} split of {m['data']!r}, found none")
        print(format_metrics(m))
        _save_outputs(evaluation, args)
        if not args.ensemble:
            write_json(Path(runs[0]) / f"eval_{args.split}.json", json_safe(m))
        results.append(m)
    if args.json:
        write_json(args.json, json_safe(results[0] if len(results) == 1 else results))
    return 0


def _save_outputs(evaluation: Evaluation, args: argparse.Namespace) -> None:
    from .analysis import write_gallery
    from .predictions import save_predictions

    ev = evaluation.eval_set
    if args.predictions:
        save_predictions(args.predictions, ev.ids, ev.labels, evaluation.headline(), ev.classes)
        print(f"  predictions saved to {args.predictions}")
    if args.gallery:
        write_gallery(evaluation, args.gallery)
        print(f"  top-loss gallery saved to {args.gallery}")


def format_metrics(m: dict[str, Any]) -> str:
    """The terminal summary: one line per model, then per-class results and confusions of the headline model."""
    head = m.get("ensemble", m)
    head = head.get("tta", head)
    lines = [f"{m['split']} split of {m['data']}: {m['n']} images, {len(head['per_class'])} classes"]
    if m["excluded"]:
        lines.append(
            f"  ({m['excluded']} of {m['n'] + m['excluded']} images left out: one of the runs trained on them)"
        )
    lines += [text_table(summary_table(m)), f"  (top-5 is top-{head['top5_k']})" if head["top5_k"] != 5 else ""]
    lines += ["per class:", text_table(per_class_table(head))]
    if head["most_confused"]:
        lines += ["most confused:", text_table(confused_table(head))]
    return "\n".join(line for line in lines if line)


def json_safe(value: Any) -> Any:
    """NaN/inf -> None, recursively, so the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def run_report(args: argparse.Namespace) -> int:
    from .report import write_report

    path = write_report(args.run, data=args.data, split=args.split, data_dir=args.data_dir)
    print(f"report written to {path} and {path.with_suffix('.md')}")
    return 0
