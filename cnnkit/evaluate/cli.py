"""``cnnkit evaluate RUN``: top-1 / top-5 accuracy and loss of a run on a split."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import yaml

from ..config import from_dict
from ..data import load_data
from ..engine.checkpoint import write_json
from ..errors import CnnkitError
from .metrics import classification_metrics, collect_logits


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="top-1/top-5 accuracy and loss of a run on a split")
    p.add_argument("run", help="run directory written by `cnnkit train`")
    p.add_argument("--data", help="dataset to evaluate on (default: the run's own)")
    p.add_argument("--data-dir", help="where named datasets are looked for")
    p.add_argument("--split", choices=("test", "val", "train"), default="test")
    p.add_argument("--json", metavar="FILE", help="also write the metrics to FILE")
    p.set_defaults(func=run_evaluate)


def evaluate_run(run: str | Path, data: str | None = None, split: str = "test", data_dir: str | None = None) -> dict:
    """Metrics of the run's best weights on ``split`` of its dataset (or of ``data``)."""
    from ..predict import Predictor

    run = Path(run)
    predictor = Predictor.from_run(run)
    cfg_path = run / "config.yaml"
    cfg = from_dict(yaml.safe_load(cfg_path.read_text())) if cfg_path.exists() else from_dict({})
    data_cfg = dataclasses.replace(cfg.data, name=data or cfg.data.name, data_dir=data_dir or cfg.data.data_dir)
    splits = load_data(data_cfg, seed=cfg.train.seed, image_size=predictor.size)
    if splits.classes != predictor.classes:
        raise CnnkitError(
            f"expected the run's classes {predictor.classes[:5]}…, found {splits.classes[:5]}… in {splits.source!r};"
            " evaluate on a dataset with the same classes"
        )
    logits, labels = collect_logits(predictor.model, getattr(splits, split), predictor.normalize)
    metrics = classification_metrics(logits, labels)
    return {"run": str(run), "data": splits.source, "split": split, **metrics}


def run_evaluate(args: argparse.Namespace) -> int:
    m = evaluate_run(args.run, args.data, args.split, args.data_dir)
    if m["n"] == 0:
        raise CnnkitError(f"expected images in the {args.split} split of {m['data']!r}, found none")
    print(f"{m['split']} split of {m['data']}: {m['n']} images")
    print(f"  top-1 accuracy {m['top1_accuracy']:.4f}  (error {m['top1_error']:.4f})")
    print(f"  top-5 accuracy {m['top5_accuracy']:.4f}  (error {m['top5_error']:.4f})")
    print(f"  loss           {m['loss']:.4f}")
    write_json(Path(args.run) / f"eval_{args.split}.json", m)
    if args.json:
        write_json(args.json, m)
    return 0
