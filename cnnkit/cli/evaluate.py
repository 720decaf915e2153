"""``cnnkit evaluate RUN [RUN …]`` (metrics, ensembles, TTA, saved predictions) and ``cnnkit report RUN``."""

from __future__ import annotations

import argparse

MODES = ("prob", "logit")  # cnnkit.evaluate.ensemble.MODES, without importing torch to build the parser


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
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the models run (default auto: a CUDA GPU when there is one)")  # fmt: skip
    p.set_defaults(func=run_evaluate)
    r = sub.add_parser("report", help="write report.html and report.md (curves, confusion, per-class, gallery)")
    r.add_argument("run", help="run directory written by `cnnkit train`")
    _data_args(r)
    r.add_argument("--no-units", action="store_true", help="leave out 'What the layers learned' (classification)")
    r.set_defaults(func=run_report)


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="dataset to evaluate on (default: the first run's own); a folder without"
                   " train/val/test folders is scored whole, and may hold some of the run's classes")  # fmt: skip
    p.add_argument("--data-dir", help="where named datasets are looked for")
    p.add_argument("--split", choices=("test", "val", "train"), default="test")


def run_evaluate(args: argparse.Namespace) -> int:
    from ..io import check_output, json_safe, write_json
    from ..tasks import evaluate_runs

    for flag in ("json", "predictions", "gallery"):
        if getattr(args, flag):
            check_output(getattr(args, flag), f"--{flag}", tuple(args.runs))
    opts = {k: getattr(args, k) for k in ("data", "split", "data_dir", "ensemble", "ensemble_mode", "tta", "device")}
    results = evaluate_runs(args.runs, **opts, predictions=args.predictions, gallery=args.gallery)
    for _, text in results:
        print(text)
    if args.json:
        metrics = [m for m, _ in results]
        write_json(args.json, json_safe(metrics[0] if len(metrics) == 1 else metrics))
    return 0


def run_report(args: argparse.Namespace) -> int:
    from ..explain.units_report import units_section
    from ..tasks import report

    sections = () if args.no_units else (units_section,)
    path = report(args.run, sections, data=args.data, split=args.split, data_dir=args.data_dir)
    print(f"report written to {path} and {path.with_suffix('.md')}")
    return 0
