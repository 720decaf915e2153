"""``cnnkit detect windows RUN IMAGE`` (a classification run as a sliding-window detector, explicit crops or
convolutional) and ``cnnkit detect grid RUN`` (a YOLO run's grid, anchors and output shape)."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="sliding-window detection with a classifier; a YOLO run's grid and anchors")
    cmds = p.add_subparsers(dest="detect_command", metavar="COMMAND")
    w = cmds.add_parser("windows", help="score every window of an image with a classification run, then NMS")
    w.add_argument("run", help="a classification run directory (`cnnkit train`)")
    w.add_argument("image", help="an image file")
    w.add_argument("--window", type=int, default=28, help="window side in image pixels (default 28)")
    w.add_argument(
        "--stride",
        type=int,
        default=4,
        help="pixels between explicit windows in each scale's resized image (default 4, LeNet-5's own"
        " stride: --conv then scores the same windows)",
    )
    w.add_argument("--scales", type=float, nargs="+", default=[1.0], help="image scales to search (default 1)")
    w.add_argument("--threshold", type=float, default=0.9, help="class probability a window needs (default 0.9)")
    w.add_argument("--iou", type=float, default=0.3, help="NMS IoU threshold (default 0.3)")
    w.add_argument("--background", help="the class that means 'no object' (default: a class named background)")
    w.add_argument("--conv", action="store_true", help="the convolutional sliding window (FC layers as convolutions)")
    w.add_argument("--json", action="store_true", help="machine-readable output")
    w.set_defaults(func=run_windows)
    g = cmds.add_parser("grid", help="a YOLO run's grid, anchors and output tensor shape")
    g.add_argument("run", help="a detect run directory trained with a yolo_<backbone> model")
    g.set_defaults(func=run_grid)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def run_windows(args: argparse.Namespace) -> int:
    import json

    from ..detection.windows import window_detect

    found = window_detect(args.run, args.image, window=args.window, stride=args.stride, scales=tuple(args.scales),
                          threshold=args.threshold, iou=args.iou, background=args.background,
                          convolutional=args.conv)  # fmt: skip
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    how = "convolutional" if args.conv else "explicit"
    print(f"{found['windows']} windows scored ({how}) in {found['seconds']:.3f} s; {len(found['objects'])} kept")
    for o in found["objects"]:
        x1, y1, x2, y2 = o["box"]
        print(f"  {o['label']} {o['score']:.0%} at x1 {x1:.0f} y1 {y1:.0f} x2 {x2:.0f} y2 {y2:.0f}")
    return 0


def run_grid(args: argparse.Namespace) -> int:
    from ..detection.build import YoloDetector
    from ..errors import CnnkitError
    from ..tasks import load

    model = load(args.run).model
    if not isinstance(model, YoloDetector):
        raise CnnkitError(f"expected a detect run with a yolo_<backbone> model, found {type(model).__name__}")
    print(model.describe())
    return 0
