"""``cnnkit train``: train a model on a dataset and write a run directory."""

from __future__ import annotations

import argparse
import os

from ..errors import CnnkitError


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model and write a run directory")
    from ..tasks import TASKS  # names only: the task modules load when a run starts

    p.add_argument("--task", choices=tuple(TASKS), help="what to learn (default classify)")
    p.add_argument("--model", help="registered model name (see `cnnkit models`); default: the task's (smallcnn)")
    p.add_argument("--pretrained", action="store_true", default=None, help="fine-tune from published ImageNet weights")
    p.add_argument("--weights", metavar="PATH", help="fine-tune from a local state dict (.safetensors/.pt/.pth)")
    p.add_argument("--freeze", metavar="GROUPS", help="keep groups frozen: all-but-head | N | stem,stage1,…")
    p.add_argument("--data", help="fashion-mnist, digits, a folder of class sub-folders, a folder of IDX files"
                   " (MNIST's format), or (localize) a YOLO data.yaml, COCO .json, VOC folder or .csv of boxes; default"
                   " fashion-mnist")  # fmt: skip
    p.add_argument("--data-dir", help="where named datasets are looked for and cached")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=batch_size, help="images per step: N, 1 (stochastic) or full (batch GD)")
    p.add_argument("--lr", type=float, help="base learning rate")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="run directory to create (default runs/<model>-<data>-<time>)")
    p.add_argument("--image-size", type=int, help="resize images to N×N (small sizes make smoke runs fast)")
    p.add_argument("--skip-bad", action="store_true", default=None, help="skip unreadable images and list them")
    p.add_argument("--config", action="append", default=[], metavar="FILE.yaml", help="YAML recipe (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. train.epochs=3")
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train)


def batch_size(text: str) -> int | str:
    if text == "full":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'full', found {text!r}") from None


# flags a resumed run takes from its own config.yaml; --epochs (to extend a run) and --quiet are the exceptions
NOT_WITH_RESUME = ("task", "model", "pretrained", "weights", "freeze", "data", "data_dir", "batch_size", "lr", "seed",
                   "out", "image_size", "skip_bad", "config", "set")  # fmt: skip


def refuse_with_resume(args: argparse.Namespace) -> None:
    given = [f"--{k.replace('_', '-')}" for k in NOT_WITH_RESUME if getattr(args, k, None) not in (None, [], False)]
    if given:
        raise CnnkitError(
            f"expected only --epochs (to extend the run) or --quiet with --resume, found {', '.join(given)}; a resumed"
            " run keeps its own config.yaml — train a new run to change it"
        )


def run_train(args: argparse.Namespace) -> int:
    from ..config import build_config
    from ..explain.units_report import units_section
    from ..tasks import resume, train

    progress = False if args.quiet else None
    sections = (units_section,)  # the report after training shows what the layers learned (train.report_units)
    if args.resume:
        refuse_with_resume(args)
        run_dir = resume(args.resume, progress=progress, epochs=args.epochs, report_sections=sections)
    else:
        cfg = build_config(
            args.config,
            args.set,
            task__name=args.task,
            model__name=args.model,
            model__pretrained=args.pretrained,
            model__weights=args.weights,
            model__freeze=args.freeze,
            data__name=args.data,
            data__data_dir=args.data_dir,
            data__image_size=args.image_size,
            data__skip_bad=args.skip_bad,
            train__epochs=args.epochs,
            train__batch_size=args.batch_size,
            optim__lr=args.lr,
            train__seed=args.seed,
            train__out=args.out,
        )
        run_dir = train(cfg, progress=progress, report_sections=sections)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 alone reports
        print(f"run directory: {run_dir}")
    return 0
