"""``cnnkit predict [RUN] IMAGE…``: predictions of a trained run (any task) or of published weights."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import CnnkitError


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify image files with a trained run, or with published weights")
    p.add_argument(
        "paths", nargs="+", metavar="[RUN] IMAGE", help="a run directory then image files (no run with --model)"
    )
    p.add_argument("--model", help="a registered model, used with --pretrained or --weights instead of a run")
    p.add_argument("--pretrained", action="store_true", help="the model's published ImageNet weights (1000 classes)")
    p.add_argument("--weights", metavar="PATH", help="a local state dict (.safetensors/.pt/.pth) for --model")
    p.add_argument("--topk", type=int, default=3, help="how many classes to show per image (default 3)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--out", metavar="DIR", help="also write each image with its prediction drawn (boxes, labels)")
    p.add_argument("--backend", choices=("eager", "onnxruntime"), default="eager",
                   help="PyTorch (eager, default) or ONNX Runtime (exports the run to RUN/model.onnx once; a .onnx"
                        " file as RUN always runs in ONNX Runtime)")  # fmt: skip
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="eager backend: where the model runs (default auto: a CUDA GPU when there is one)",
    )
    p.set_defaults(func=run_predict)


def predictor_for(args: argparse.Namespace) -> tuple[Any, list[str]]:
    """The predictor the arguments ask for (the run's task decides which), and the image paths."""
    from ..predict import Predictor
    from ..tasks import load

    backend = getattr(args, "backend", "eager")
    if backend != "eager" or (args.model is None and args.paths[0].endswith(".onnx")):
        from ..deploy import load_predictor

        run = None if args.model else args.paths[0]
        images = args.paths if args.model else args.paths[1:]
        if not images:
            raise CnnkitError(f"expected image files after {args.paths[0]!r}, found none")
        pred = load_predictor(run, model=args.model, pretrained=args.pretrained, weights=args.weights,
                              backend=backend, predicting=True)  # fmt: skip
        return pred, images
    if args.model is None:
        if args.pretrained or args.weights:
            raise CnnkitError(
                "expected --model NAME with --pretrained/--weights, found none; e.g. --model efficientnet_lite0"
            )
        if len(args.paths) < 2:
            raise CnnkitError(
                f"expected a run directory and image files, found only {args.paths[0]!r}; or pass --model"
            )
        return load(args.paths[0], device=args.device), args.paths[1:]
    if not (args.pretrained or args.weights):
        raise CnnkitError(f"expected --pretrained or --weights PATH with --model {args.model}, found neither")
    return Predictor.from_pretrained(args.model, args.weights, device=args.device), args.paths


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def expand_images(paths: list[str]) -> list[str]:
    """Image paths, with each folder replaced by the image files under it (sorted)."""
    from pathlib import Path

    out: list[str] = []
    for p in paths:
        if Path(p).is_dir():
            found = sorted(str(f) for f in Path(p).rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
            if not found:
                raise CnnkitError(f"expected image files in the folder {p!r}, found none; give image files or a folder")
            out += found
        else:
            out.append(p)
    return out


def run_predict(args: argparse.Namespace) -> int:
    import sys
    import time

    predictor, images = predictor_for(args)
    images = expand_images(images)
    t0 = time.perf_counter()
    preds = predictor.predict(images, topk=args.topk)
    seconds = time.perf_counter() - t0
    if len(images) > 1:  # on stderr, so --json output stays clean
        print(f"{len(images)} images in {seconds:.2f} s ({len(images) / seconds:.1f} images/s)", file=sys.stderr)
    written = predictor.draw(images, preds, args.out) if args.out else []
    if args.json:
        print(json.dumps([{"image": str(f), **p.to_dict()} for f, p in zip(images, preds)], indent=2))
        return 0
    for f, p in zip(images, preds):
        print(f"{f}: {p.describe()}")
    for path in written:
        print(f"wrote {path}")
    return 0
