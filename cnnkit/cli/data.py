"""``cnnkit data synth``: make a labelled detection dataset offline, objects pasted onto photographs.

``cnnkit data synth --objects digits --objects-per-image 1..3 --format yolo,coco --out scenes`` writes
``scenes/images/{train,val,test}/``, instance-id masks in ``scenes/masks/`` and the labels in each format asked
for. ``cnnkit data crops DATA --out crops`` cuts the labelled objects of any box dataset, plus background windows,
into the class folders a window classifier trains on (``crops/{train,val,test}/<class>/``). The library code lives in
:mod:`cnnkit.data.synth` and :mod:`cnnkit.data.crops`; it is imported inside the run functions, so building the
parser does not import torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..data.crops import CropSet
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
    c = data_sub.add_parser("crops", help="object crops plus background windows of a box dataset, as class folders")
    c.add_argument("data", help="a YOLO data.yaml, COCO .json, Pascal VOC folder or .csv of boxes")
    c.add_argument("--out", required=True, help="folder to write (new or empty), not inside DATA")
    c.add_argument("--size", type=int, default=28, help="crop side in pixels (default 28)")
    c.add_argument(
        "--background-ratio", type=float, default=1.0, help="background windows per object crop (default 1.0)"
    )
    c.add_argument("--seed", type=int, default=0, help="same seed, same files (default 0)")
    c.add_argument("--force", action="store_true", help="write into a non-empty --out, replacing earlier crops")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=run_crops)


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


def run_crops(args: argparse.Namespace) -> int:
    """Cut the crops, write them, print one line per split. Returns the exit status."""
    from ..data.crops import MARGIN, MAX_IOU, check_options, write_crops
    from ..data.labels import open_box_dataset
    from ..data.synth import prepare_out
    from ..engine.rundir import check_not_inside

    check_options(args.size, args.background_ratio, MARGIN, MAX_IOU, args.seed)
    data = Path(args.data)
    check_not_inside(Path(args.out), str(data if data.is_dir() else data.parent))
    if not args.force:
        prepare_out(args.out)  # refuse a non-empty --out before reading the dataset
    crops = write_crops(
        open_box_dataset(data),
        args.out,
        size=args.size,
        background_ratio=args.background_ratio,
        seed=args.seed,
        overwrite=args.force,
        progress=not args.quiet,
    )
    print(_crops_summary(args, crops))
    return 0


def _crops_summary(args: argparse.Namespace, crops: CropSet) -> str:
    from ..data.crops import BACKGROUND, MANIFEST

    counts = crops.counts()
    objects = sum(n for c in counts.values() for k, n in c.items() if k != BACKGROUND)
    background = sum(c[BACKGROUND] for c in counts.values())
    lines = [f"wrote {objects} object and {background} background crops ({args.size}×{args.size}) to {args.out}"]
    for split, c in counts.items():
        per_class = ", ".join(f"{k}: {c[k]}" for k in crops.classes if c[k] and k != BACKGROUND)
        short = crops.background_wanted[split] - c[BACKGROUND]
        note = f" (found no room for {short} more)" if short > 0 else ""
        n = sum(c.values()) - c[BACKGROUND]
        lines.append(f"  {split}: {n} objects ({per_class}), {c[BACKGROUND]} background{note} in {crops.folder(split)}")
    if "train" in counts:
        missing = sorted({k for c in counts.values() for k in c} - set(counts["train"]))
        if missing:
            lines.append(f"  note: no train crops of {', '.join(missing)}; cnnkit train refuses val/test classes that"
                         " train lacks: make more scenes")  # fmt: skip
    sides = sorted(w.window[2] - w.window[0] for w in crops.crops if w.label != BACKGROUND)
    lines += [
        f"  windows: {crops.out / MANIFEST} (split, class, file, source image, x1 y1 x2 y2)",
        f"train with: cnnkit train --data {args.out} --image-size {args.size}",
        f"then: cnnkit detect windows RUN IMAGE --window {sides[len(sides) // 2]} (the median object window)",
    ]
    return "\n".join(lines)
