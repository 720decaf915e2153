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
    p.add_argument("--skip-bad", action="store_true",
                   help="leave out (and list) files that are not readable images, and predict the others")  # fmt: skip
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


CHUNK = 256  # images predicted, printed and drawn at a time: a folder of any size streams, in bounded memory


def run_predict(args: argparse.Namespace) -> int:
    import sys
    import time

    from tqdm.auto import tqdm

    predictor, images = predictor_for(args)
    images = expand_images(images)
    t0, done = time.perf_counter(), 0
    skipped: list[tuple[str, str]] = []
    found: list[dict[str, Any]] = []
    with tqdm(total=len(images), unit="img", disable=len(images) <= CHUNK or None, leave=False) as bar:
        for chunk in (images[i : i + CHUNK] for i in range(0, len(images), CHUNK)):
            kept, preds = predict_chunk(predictor, chunk, args.topk, args.skip_bad and len(images) > 1, skipped)
            written = predictor.draw(kept, preds, args.out) if args.out else []
            if args.json:
                found += [{"image": str(f), **p.to_dict()} for f, p in zip(kept, preds)]
            else:
                for line in [*(f"{f}: {p.describe()}" for f, p in zip(kept, preds)), *(f"wrote {w}" for w in written)]:
                    bar.write(line, file=sys.stdout)
            done += len(kept)
            bar.update(len(chunk))
    seconds = time.perf_counter() - t0
    if args.json:
        print(json.dumps(found, indent=2))
    for path, reason in skipped:  # on stderr, so --json output stays clean
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if len(images) > 1:
        print(f"{done} images in {seconds:.2f} s ({done / seconds:.1f} images/s)" + (f"; {len(skipped)} skipped"
              if skipped else ""), file=sys.stderr)  # fmt: skip
    return 0


def predict_chunk(predictor: Any, chunk: list[str], topk: int, skip_bad: bool,
                  skipped: list[tuple[str, str]]) -> tuple[list[str], list[Any]]:  # fmt: skip
    """(the images predicted, their predictions); with ``skip_bad`` an unreadable file is added to ``skipped`` as
    (path, reason) and left out, else it stops the command in one line naming it."""
    from ..data.images import BadImageError

    try:
        return chunk, predictor.predict(chunk, topk=topk)
    except BadImageError as e:
        if not skip_bad:
            hint = "fix or remove it, or pass --skip-bad to predict the others" if len(chunk) > 1 else "fix it"
            raise BadImageError(e.path, e.reason, hint) from None
    kept, preds = [], []
    for image in chunk:  # a bad file among them: one at a time, to find it (rare, so the slow way is fine)
        try:
            preds += predictor.predict([image], topk=topk)
            kept.append(image)
        except BadImageError as e:
            skipped.append((image, e.reason))
    return kept, preds
