"""``cnnkit data synth``: make a labelled detection dataset offline, objects pasted onto photographs.

``cnnkit data synth --objects digits --objects-per-image 1..3 --format yolo,coco --out scenes`` writes
``scenes/images/{train,val,test}/``, instance-id masks in ``scenes/masks/`` and the labels in each format asked
for. The library code lives in :mod:`cnnkit.data.synth`; it is imported inside :func:`run_synth`, so building the
parser does not import torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..data.synth import SceneSet

FORMATS = ("yolo", "coco", "voc", "csv")  # cnnkit.data.labels.FORMATS, repeated so the parser loads no torch


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="make datasets (synthetic detection scenes)")
    p.set_defaults(func=lambda args: _help(p))
    data_sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    s = data_sub.add_parser("synth", help="objects pasted onto photographs, with exact boxes and masks")
    s.add_argument("--objects", default="digits", help="digits (default), fashion-mnist, or a class folder")
    s.add_argument("--backgrounds", help="folder of photos (default: scikit-learn's and scikit-image's photographs)")
    s.add_argument("--objects-per-image", type=count_range, default=(1, 1), metavar="MIN..MAX", help="or N (default 1)")
    s.add_argument("--size", type=int, help="scene side in pixels (default 64 for digits and fashion-mnist, else 128)")
    s.add_argument("--train", type=int, help="training scenes (default 2000)")
    s.add_argument("--val", type=int, help="validation scenes (default 400)")
    s.add_argument("--test", type=int, help="test scenes (default 400)")
    s.add_argument(
        "--format", type=format_list, default=("yolo",), help="comma list of yolo,coco,voc,csv (default yolo)"
    )
    s.add_argument("--seed", type=int, default=0, help="same seed, same files (default 0)")
    s.add_argument("--out", required=True, help="folder to write (new or empty)")
    s.add_argument("--force", action="store_true", help="write into a non-empty --out, replacing a previous synth")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=run_synth)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def count_range(text: str) -> tuple[int, int]:
    """``"N"`` or ``"MIN..MAX"`` -> (min, max)."""
    lo, _, hi = text.partition("..")
    try:
        pair = (int(lo), int(hi or lo))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or MIN..MAX, found {text!r}") from None
    if not 0 <= pair[0] <= pair[1]:
        raise argparse.ArgumentTypeError(f"expected 0 <= MIN <= MAX, found {text!r}")
    return pair


def format_list(text: str) -> tuple[str, ...]:
    """``"yolo,coco"`` -> ("yolo", "coco"), each checked."""
    names = tuple(dict.fromkeys(f.strip().lower() for f in text.split(",") if f.strip()))
    unknown = [f for f in names if f not in FORMATS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"expected a comma list of {','.join(FORMATS)}, found {text!r}")
    return names


def run_synth(args: argparse.Namespace) -> int:
    """Generate the scenes, write them, print what was written. Returns the exit status."""
    from ..data.synth import prepare_out, synthesize, write_scenes

    prepare_out(args.out, overwrite=args.force)  # fail before generating, not after
    scenes = synthesize(
        args.objects,
        backgrounds=args.backgrounds,
        objects_per_image=args.objects_per_image,
        size=args.size,
        train=args.train,
        val=args.val,
        test=args.test,
        seed=args.seed,
        progress=not args.quiet,
    )
    paths = write_scenes(args.out, scenes, args.format, overwrite=args.force, progress=not args.quiet)
    print(_summary(args, scenes, paths))
    return 0


def _summary(args: argparse.Namespace, scenes: SceneSet, paths: dict[str, Path]) -> str:
    counts = ", ".join(f"{len(v)} {k}" for k, v in scenes.splits.items())
    first = next(iter(scenes.splits.values()))[0].image.shape
    lo, hi = args.objects_per_image
    per = f"{lo} object{'s' if lo != 1 else ''}" if lo == hi else f"{lo}–{hi} objects"
    lines = [
        f"wrote {counts} scenes ({first[0]}×{first[1]}, {per} each, {len(scenes.classes)} classes) to {args.out}",
        *(f"  {fmt}: {path}" for fmt, path in paths.items()),
        f"  masks: {Path(args.out) / 'masks'} (one PNG per image: 0 background, i = i-th object)",
        f"train with: cnnkit train --data {next(iter(paths.values()))}",
    ]
    return "\n".join(lines)
