"""``cnnkit explain`` (per-layer table, preflight, SVG diagram) and ``cnnkit visualize`` (what a run looks at).

``cnnkit explain MODEL|SPEC.yaml|RUN [--input 3x224x224] [--json] [--svg FILE] [--strict]`` takes a registered
name, a layer-list YAML file or a run directory (explained at its own input size). The model is built on the
meta device, so even VGG-16 is explained in milliseconds without allocating its weights.

``cnnkit visualize RUN IMAGE --out DIR [--layers a,b,c]`` writes ``filters.png``, ``feature_maps.png``,
``gradcam.png``, ``occlusion.png`` and ``kernels_vs_filters.png``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CnnkitError
from .units import add_units_arguments, run_units

if TYPE_CHECKING:
    import torch
    from torch import nn


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="per-layer shapes, parameters, MACs, memory and receptive fields")
    p.add_argument("target", help="registered model name, layer-list SPEC.yaml, or run directory")
    p.add_argument("--input", help="input size C×H×W, e.g. 3x224x224 (default: the model's or the run's)")
    p.add_argument("--num-classes", type=int, help="classifier width (default: the model's or the run's)")
    p.add_argument("--strict", action="store_true", help="also refuse conv/pool sizes that PyTorch would floor")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--svg", metavar="FILE", help="also write an architecture diagram as SVG")
    p.set_defaults(func=run_explain)
    v = sub.add_parser("visualize", help="filters, feature maps, Grad-CAM and occlusion for a trained run")
    v.add_argument("run", help="run directory written by `cnnkit train`")
    v.add_argument("image", help="image file to explain")
    v.add_argument("--out", required=True, help="folder for the PNG files")
    v.add_argument("--layers", help="comma-separated layer names for feature maps (default: low, mid, high)")
    v.add_argument("--target", help="class name or index to explain (default: the predicted class)")
    v.add_argument("--patch", type=int, help="occluder side in pixels (default: 1/7 of the image side)")
    v.set_defaults(func=run_visualize)
    u = sub.add_parser(
        "visualize-units",
        help="what each channel of a layer learned: top dataset patches and deconvnet projections"
        " (also `cnnkit visualize units`)",
    )
    add_units_arguments(u)
    u.set_defaults(func=run_units)


def run_explain(args: argparse.Namespace) -> int:
    from ..engine.freeze import set_frozen
    from ..explain.preflight import preflight
    from ..explain.summary import format_table, summarize
    from ..explain.svg import write_svg
    from ..explain.targets import explained_part, frozen_groups, group_table, load_target

    model, shape, label = load_target(args.target, args.input, args.num_classes)
    frozen = frozen_groups(args.target)
    set_frozen(model, frozen)  # the totals' trainable count then matches the run
    net, part, note = explained_part(model)  # a detector or Mask R-CNN: its backbone
    preflight(net, shape, strict=args.strict)
    summary = summarize(net, shape, name=f"{label}, {part}" if part else label)
    if args.svg:
        write_svg(summary, args.svg)
    if args.json:
        said = {"explained": part, "note": note} if part else {}
        print(json.dumps({**summary.to_dict(), "frozen_groups": frozen, **said}, indent=2))
        return 0
    if note:
        print(note)
    print(format_table(summary))
    if frozen:
        print(group_table(model, frozen))
    if args.svg:
        print(f"wrote {args.svg}")
    return 0


def run_visualize(args: argparse.Namespace) -> int:
    import torch

    from ..explain import visualize as vis
    from ..explain.targets import require_classifier
    from ..io import check_output
    from ..predict import Predictor

    require_classifier(args.run, "visualize", "Grad-CAM and occlusion follow one class score of a classifier")
    pred = Predictor.from_run(args.run, device="cpu")
    model, classes = pred.model.eval(), pred.classes
    x = pred.normalize(pred.to_tensor(args.image)[None].to(pred.device)).float()  # [1, C, H, W]
    with torch.no_grad():
        probs = torch.softmax(model(x).float(), 1)[0]
    target = _class_index(args.target, classes) if args.target else int(probs.argmax())
    head = f"{Path(args.image).name}: predicted {classes[int(probs.argmax())]!r} ({float(probs.max()):.0%}) — "
    out = check_output(args.out, "--out", (args.image,), folder=True)
    layers = [s.strip() for s in args.layers.split(",")] if args.layers else vis.default_layers(model, x)
    written = [
        vis.plot_filters(model, out / "filters.png", title=head),
        vis.plot_feature_maps(vis.capture(model, x, layers), x, out / "feature_maps.png", title=head),
        _gradcam(model, x, target, classes, out / "gradcam.png", head),
        _occlusion(model, x, target, classes, out / "occlusion.png", head, args.patch),
        vis.plot_kernels_vs_filters(model, x, out / "kernels_vs_filters.png", title=head),
    ]
    for path in written:
        print(f"wrote {path}")
    return 0


def _class_index(value: str, classes: list[str]) -> int:
    if value in classes:
        return classes.index(value)
    if value.isdigit() and int(value) < len(classes):
        return int(value)
    raise CnnkitError(f"expected a class name or index of this run ({', '.join(classes[:10])}…), found {value!r}")


def _gradcam(model: nn.Module, x: torch.Tensor, target: int, classes: list[str], path: Path, head: str) -> Path:
    from ..explain.visualize import default_layers, grad_cam, plot_heatmap

    layer = default_layers(model, x)[-1]
    cam, _ = grad_cam(model, x, target, layer)
    return plot_heatmap(x, cam, path, f"{head}Grad-CAM for {classes[target]!r} at {layer}", "Grad-CAM")


def _occlusion(
    model: nn.Module, x: torch.Tensor, target: int, classes: list[str], path: Path, head: str, patch: int | None
) -> Path:
    from ..explain.visualize import occlusion, plot_heatmap

    patch = patch or max(2, min(x.shape[-2:]) // 7)
    probs, base = occlusion(model, x, target, patch, max(1, patch // 2))
    title = f"{head}occlusion: P({classes[target]!r}) with a {patch}×{patch} mean patch (unoccluded {base:.2f})"
    return plot_heatmap(x, probs, path, title, f"P({classes[target]!r}); low = important", cmap="viridis")
