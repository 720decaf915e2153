"""The classification report's "What the layers learned" section: Zeiler & Fergus figures of two layers.

An early and the last convolutional layer of the run's model (:func:`cnnkit.explain.units.overview_layers`), each
searched over at most ``LIMIT`` images of the run's validation split: for its ``CHANNELS`` most active channels, the
``TOP`` images that excite it most, cropped to the unit's receptive field, beside their deconvnet projections
(:func:`cnnkit.explain.units.plot_units`, as ``cnnkit visualize units`` draws them). The PNGs go to the report's
files folder as ``units_<layer>.png``.

The report writer (:mod:`cnnkit.evaluate.report`) is a lower layer and does not import this module: the command
that writes a report hands :func:`units_section` to the classification task (``report_sections``), which calls it
and passes the blocks on. The section never fails the report: when the figures cannot be drawn it says why in one
line instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CnnkitError
from ..evaluate.report import FILES, Block
from ..predict import Predictor
from .units import UnitLayer, channel_views, overview_layers, plot_units, run_images, top_units

TITLE = "What the layers learned"
LIMIT = 256  # validation images searched: bounds the cost (about 2 s on one core for a 28×28 smallcnn run)
CHANNELS = 4  # most active channels per layer
TOP = 9  # images per channel
SPLIT = "val"
INTRO = (
    f"For each layer's {CHANNELS} most active channels, the {TOP} images that excite the channel most, each cropped to"
    " the receptive field of its strongest unit (left), beside the deconvnet projection of that one activation back"
    " to pixels (right; Zeiler & Fergus 2014); cnnkit visualize units RUN --layer NAME draws any layer."
)


@dataclass(frozen=True)
class UnitsFigure:
    """One layer's figure: the layer, its role (``first`` / ``last``), the PNG, how many images were searched out of
    how many in the split."""

    layer: UnitLayer
    role: str
    path: Path
    searched: int
    total: int


def draw_units(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    limit: int = LIMIT,
    channels: int = CHANNELS,
    k: int = TOP,
    data_dir: str | None = None,
) -> list[UnitsFigure]:
    """Search at most ``limit`` of the run's validation images (evenly spaced through the split, so a folder's
    sorted ``val/`` is sampled in every class) and draw the figures of an early and the last conv layer.

    Args:
        run_dir: a classification run (model.json, weights, config.yaml).
        out_dir: folder for the PNGs (``units_<layer>.png``).
        data_dir: where named datasets are looked for, instead of the run's own ``data.data_dir``.

    Raises:
        CnnkitError: the run's validation images cannot be loaded, or the model has no layer with a spatial map.
    """
    pred = Predictor.from_run(run_dir, device="cpu")
    model = pred.model.eval()
    split = run_images(run_dir, SPLIT, data_dir=data_dir)  # uint8 [N, C, H, W]
    images = split[:: math.ceil(len(split) / limit)]
    layers = overview_layers(model, tuple(images.shape[1:]))
    roles = ["first", "last"] if len(layers) == 2 else ["only"]
    figures = []
    for layer, role in zip(layers, roles):
        top = top_units(model, layer, images, pred.normalize, k, progress=False)
        views = channel_views(model, layer, top, images, pred.normalize, top.most_active(channels))
        title = f"{role} conv layer, {top.count:,} {SPLIT} images — "
        path = plot_units(layer, views, Path(out_dir) / f"units_{layer.name}.png", title)
        figures.append(UnitsFigure(layer, role, path, top.count, len(split)))
    return figures


def units_section(run_dir: str | Path, *, data_dir: str | None = None, **_: Any) -> list[Block]:
    """The report blocks of "What the layers learned" for a classification run; never raises.

    Takes the report's options (``data``, ``split``, ``data_dir``); only ``data_dir`` is used: the figures are of
    the run's own validation images, whatever split the report evaluates. Figures of an earlier report are removed
    first, so a failure never leaves stale ones linked to nothing.
    """
    out_dir = Path(run_dir) / FILES
    for old in out_dir.glob("units_*.png"):
        old.unlink()
    try:
        figures = draw_units(run_dir, out_dir, data_dir=data_dir)
    except Exception as e:  # the report is written whatever goes wrong here
        for partial in out_dir.glob("units_*.png"):
            partial.unlink()
        return [("h2", TITLE), ("p", f"No figures: {_reason(e)}")]
    blocks: list[Block] = [("h2", TITLE), ("p", INTRO)]
    for f in figures:
        blocks += [("p", _sentence(f)), ("img", (f"{FILES}/{f.path.name}", f"units of {f.layer.name}"))]
    return blocks


def _sentence(f: UnitsFigure) -> str:
    (rh, rw), (_, h, w) = f.layer.rf, f.layer.input
    wider = f", wider than the {h}×{w} image" if rh > h or rw > w else ""
    searched = f"all {f.total:,}" if f.searched == f.total else f"{f.searched:,} of the {f.total:,} (evenly spaced)"
    return (
        f"{f.role.capitalize()} conv layer {f.layer.name}: receptive field {rh}×{rw} pixels{wider};"
        f" {searched} validation images searched."
    )


def _reason(e: Exception) -> str:
    """One line: a ``CnnkitError``'s "expected …, found …" without the command-line hint after it; any other
    error's type and the first line of its message."""
    lines = str(e).strip().splitlines()
    text = lines[0] if lines else "no message"
    text = text.split("; ")[0] if isinstance(e, CnnkitError) else f"{type(e).__name__}: {text}"
    return text if text.endswith(".") else text + "."
