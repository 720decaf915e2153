"""``cnnkit visualize units RUN --layer NAME``: what each unit of a layer learned (Zeiler & Fergus 2014).

For each of ``--channels`` channels of the layer (the most active ones), the ``--top`` images of the run's
validation split (or ``--data``/``--split``) that excite it most: the patch under the unit's receptive field
beside its deconvnet projection. Writes one PNG (default ``RUN/units_<layer>.png``).

The library code lives in :mod:`cnnkit.explain.units`; it is imported inside :func:`run_units`, so building
the parser does not import torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_units_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``cnnkit visualize units``; sets ``func=run_units``."""
    parser.add_argument("run", help="run directory written by `cnnkit train`")
    parser.add_argument("--layer", required=True, help="layer name, as in the first column of `cnnkit explain RUN`")
    parser.add_argument("--channels", type=int, default=8, help="how many of the most active channels (default 8)")
    parser.add_argument("--top", type=int, default=9, help="images per channel, strongest first (default 9)")
    parser.add_argument("--data", help="another dataset (name or folder) instead of the run's")
    parser.add_argument("--split", default="val", choices=("train", "val", "test"), help="which split (default val)")
    parser.add_argument(
        "--method",
        default="deconv",
        choices=("deconv", "guided"),
        help="projection: ZF deconvnet (default) or guided backpropagation",
    )
    parser.add_argument("--limit", type=int, help="search only the first N images of the split")
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default 256)")
    parser.add_argument("--out", help="PNG file to write (default RUN/units_<layer>.png)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_units)


def run_units(args: argparse.Namespace) -> int:
    """Search the split, project the top units, write the figure; print its path. Returns the exit status."""
    from ..errors import CnnkitError
    from ..explain.targets import require_classifier
    from ..explain.units import find_units, plot_units, run_images
    from ..predict import Predictor

    for flag in ("channels", "top", "batch_size", "limit"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise CnnkitError(f"expected --{flag.replace('_', '-')} ≥ 1, found {value}")
    require_classifier(args.run, "visualize units", "it rebuilds the run as a classifier; other tasks not yet")
    pred = Predictor.from_run(args.run, device="cpu")
    images = run_images(args.run, args.split, args.data)[: args.limit]
    model = pred.model.eval()
    layer, top, views = find_units(
        model, args.layer, images, pred.normalize, args.channels, args.top, args.method, args.batch_size,
        progress=not args.quiet,
    )  # fmt: skip
    out = Path(args.out) if args.out else Path(args.run) / f"units_{layer.name}.png"
    data = args.data or pred.card.data or "the run's data"
    title = f"{Path(pred.card.model).stem} on {top.count:,} {args.split} images of {data} — "
    print(f"wrote {plot_units(layer, views, out, title)}")
    return 0
