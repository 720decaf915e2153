"""What each unit of a layer responds to across a dataset, shown as Zeiler & Fergus (2014) showed it.

For each channel of a layer: the ``k`` dataset images in which the channel responds most strongly (its strongest
unit in each image, one per image), the image patch under that unit's receptive field, and the **deconvnet
projection** of that single activation back to pixel space, cropped the same way.

- Receptive field: the crop of unit (i, j) is the one arithmetic of :mod:`cnnkit.explain.trace` (``Field``): on
  each axis, input pixels ``start + i·jump − (rf − 1)/2 … start + i·jump + (rf − 1)/2``, clamped to the image.
- Deconvnet: Captum's ``Deconvolution`` on the model prefix that returns the chosen activation alone. Its backward
  pass is ZF's: max pooling passes the signal to the position that won the forward pass (the recorded switches),
  a convolution passes it through its transposed filters, and each ``nn.ReLU`` rectifies the signal coming back
  (ReLU of the backward signal, whatever the forward sign). ``method="guided"`` uses Captum's ``GuidedBackprop``
  (rectify the backward signal *and* mask it by the forward pass, Springenberg et al. 2015). ReLUs written as
  ``F.relu`` calls, not ``nn.ReLU`` modules, get the plain gradient rule.
- The dataset pass is batched and keeps only a running top-``k`` per channel (``torch.topk`` over the running
  best and the new batch), so memory does not grow with the dataset.

A layer's output is the output of its module's last call (as :func:`cnnkit.explain.visualize.capture` reads it);
the forward pass stops there, so the rest of the network is not run.
"""

from __future__ import annotations

import difflib
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NoReturn

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn
from torchvision.utils import make_grid
from tqdm.auto import tqdm

from ..errors import CnnkitError
from ..io import save_figure
from .trace import Field, field_of, run_traced

OUTSIDE = (0.86, 0.89, 0.95)  # display colour of receptive-field pixels that fall outside the image
SPLITS = ("train", "val", "test")


# ---- the layer ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UnitLayer:
    """A layer whose output is a spatial map of units.

    Attributes:
        name: module name in ``model.named_modules()``.
        field: receptive field of its units (``r``, ``j``, ``start`` per axis, in input pixels).
        shape: output per image (C, h, w).
        calls: how many times the module runs in one forward pass (its last call is the layer's output).
        input: the input size (C, H, W) the field was computed for.
    """

    name: str
    field: Field
    shape: tuple[int, int, int]
    calls: int
    input: tuple[int, int, int]

    @property
    def rf(self) -> tuple[int, int]:
        return round(self.field.r[0]), round(self.field.r[1])


def _probe(model: nn.Module, shape: tuple[int, int, int]) -> dict[str, list[Tensor]]:
    """One traced meta-device forward pass: every named module -> its outputs (one per call, with fields)."""
    outs: dict[str, list[Tensor]] = {}

    def keep(name: str) -> Callable[..., None]:
        return lambda m, a, out: outs.setdefault(name, []).append(out)

    handles = [m.register_forward_hook(keep(n)) for n, m in model.named_modules() if n]
    try:
        run_traced(model, shape, record=False)
    finally:
        for h in handles:
            h.remove()
    return outs


def _is_spatial(out: object) -> bool:
    return isinstance(out, Tensor) and out.ndim == 4 and field_of(out) is not None


def find_layer(model: nn.Module, name: str, shape: Sequence[int] | None = None) -> UnitLayer:
    """The layer ``name`` of ``model`` for inputs of ``shape`` (C, H, W; default ``model.default_input``).

    A name that is not a module but ends exactly one module name (``c3`` for a spec's ``features.c3``) is taken.

    Raises:
        CnnkitError: an unknown name (the valid ones listed, with a did-you-mean), or a layer whose output is not a
            spatial map (a ``Linear``).
    """
    shape = tuple(shape or model.default_input)
    outs = _probe(model, shape)
    valid = [n for n, o in outs.items() if _is_spatial(o[-1])]
    modules = dict(model.named_modules())
    if name not in modules:
        ends = [n for n in modules if n.endswith("." + name)]
        name = ends[0] if len(ends) == 1 else _unknown(model, name, valid)
    if name not in valid:
        out = outs.get(name, [None])[-1]
        shape_text = ", ".join(map(str, out.shape[1:])) if isinstance(out, Tensor) else ""
        found = f"whose output is Tensor[N, {shape_text}]" if shape_text else "which does not run in the forward pass"
        raise CnnkitError(
            f"expected a layer with a spatial map (Tensor[N, C, h, w]), found {name} ({type(modules[name]).__name__})"
            f" {found}; pick a convolutional layer such as {valid[-1] if valid else 'none'}"
        )
    out = outs[name][-1]
    return UnitLayer(name, field_of(out), tuple(out.shape[1:]), len(outs[name]), shape)


def overview_layers(model: nn.Module, shape: Sequence[int] | None = None) -> list[UnitLayer]:
    """An early and the last convolutional layer of ``model`` for inputs of ``shape`` (C, H, W): what a report shows.

    The first and the last ``nn.Conv2d`` to run whose map is larger than 1×1 (any such layer when no conv has one;
    an SE block's 1×1 convs on a pooled vector are not maps), each widened to its block: the largest enclosing
    module that holds no other convolution and outputs the same map, so a conv–BN–ReLU block (``stem.0`` of
    smallcnn) is shown after its ReLU. One layer when both are the same.

    Raises:
        CnnkitError: a model with no layer whose output is a spatial map larger than 1×1.
    """
    shape = tuple(shape or model.default_input)
    outs, modules = _probe(model, shape), dict(model.named_modules())
    spatial = [n for n, o in outs.items() if _is_spatial(o[-1]) and o[-1].shape[-2:].numel() > 1]
    convs = [n for n in spatial if isinstance(modules[n], nn.Conv2d)] or spatial
    if not convs:
        raise CnnkitError(f"expected a layer with a spatial map (h×w > 1) in {type(model).__name__}, found none")

    def block(name: str) -> str:
        parent = name.rpartition(".")[0]
        while parent in outs and _same_map(outs[parent], outs[name]) and _one_conv(modules[parent]):
            name, parent = parent, parent.rpartition(".")[0]
        return name

    names = dict.fromkeys(block(n) for n in (convs[0], convs[-1]))
    return [UnitLayer(n, field_of(outs[n][-1]), tuple(outs[n][-1].shape[1:]), len(outs[n]), shape) for n in names]


def _same_map(outs: list[Tensor], inner: list[Tensor]) -> bool:
    a, b = outs[-1], inner[-1]
    return len(outs) == len(inner) and _is_spatial(a) and a.shape == b.shape and field_of(a) == field_of(b)


def _one_conv(module: nn.Module) -> bool:
    return sum(isinstance(m, nn.Conv2d) for m in module.modules()) == 1


def _unknown(model: nn.Module, name: str, valid: list[str], show: int = 40) -> NoReturn:
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    more = f" … ({len(valid)} in all; `cnnkit explain RUN` lists every layer)" if len(valid) > show else ""
    raise CnnkitError(
        f"expected a layer of {type(model).__name__}, found {name!r}; {hint}"
        f"layers with spatial maps: {', '.join(valid[:show]) or 'none'}{more}"
    )


class _Reached(Exception):
    """Raised from a forward hook to stop the forward pass at a layer, carrying its output."""

    def __init__(self, out: Tensor) -> None:
        self.out = out


class LayerOutput(nn.Module):
    """The model prefix up to a layer: x Tensor[N, C, H, W] -> the layer's output Tensor[N, K, h, w].

    The forward pass stops at the layer's last call (an exception raised from a forward hook), so later layers do
    not run and nothing later can modify the map in place.
    """

    def __init__(self, model: nn.Module, layer: UnitLayer) -> None:
        super().__init__()
        self.model, self.layer = model, layer
        self.module = dict(model.named_modules())[layer.name]

    def forward(self, x: Tensor) -> Tensor:
        calls = 0

        def stop(m: nn.Module, a: tuple, out: Tensor) -> None:
            nonlocal calls
            calls += 1
            if calls == self.layer.calls:
                raise _Reached(out)

        handle = self.module.register_forward_hook(stop)
        try:
            self.model(x)
        except _Reached as r:
            return r.out
        finally:
            handle.remove()
        raise CnnkitError(f"expected layer {self.layer.name} to run {self.layer.calls} time(s), found {calls}")


class UnitOutput(nn.Module):
    """One activation per image: x Tensor[N, C, H, W] -> Tensor[N], the layer's ``channel`` at (rows[n], cols[n])."""

    def __init__(self, prefix: LayerOutput, channel: int, rows: Tensor, cols: Tensor) -> None:
        super().__init__()
        self.prefix, self.channel, self.rows, self.cols = prefix, channel, rows, cols

    def forward(self, x: Tensor) -> Tensor:
        a = self.prefix(x)  # [N, K, h, w]
        return a[torch.arange(len(a)), self.channel, self.rows, self.cols]


# ---- the dataset pass: a bounded top-k per channel ------------------------------------------------------------
@dataclass
class TopUnits:
    """The ``k`` strongest responses of every channel of a layer, at most one per image, strongest first.

    Attributes:
        values: Tensor[K, k] activations.
        image: Tensor[K, k] dataset indices of the images.
        row, col: Tensor[K, k] positions of the units in the layer's h×w map.
        mean: Tensor[K] mean over the images of each channel's strongest response (ranks the channels).
        count: number of images searched.
    """

    values: Tensor
    image: Tensor
    row: Tensor
    col: Tensor
    mean: Tensor
    count: int

    def most_active(self, n: int) -> list[int]:
        """The ``n`` channels with the largest mean strongest response, most active first."""
        return self.mean.argsort(descending=True)[:n].tolist()


def merge_topk(best: Tensor, keys: Tensor, values: Tensor, new_keys: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Keep the ``k`` largest of a running best and a new batch, per row.

    Args:
        best, keys: Tensor[K, m] running values and their int64 keys (m ≤ k).
        values, new_keys: Tensor[K, B] the batch's values and keys.

    Returns:
        (Tensor[K, min(k, m + B)] values, descending; their keys).
    """
    v, i = torch.cat([best, values], 1), torch.cat([keys, new_keys], 1)
    top, pos = v.topk(min(k, v.shape[1]), dim=1)
    return top, i.gather(1, pos)


def top_units(
    model: nn.Module,
    layer: UnitLayer,
    images: Tensor,
    normalize: Callable[[Tensor], Tensor],
    k: int = 9,
    batch_size: int = 256,
    progress: bool = True,
) -> TopUnits:
    """Search ``images`` for every channel's ``k`` strongest units (one per image), in batches.

    Args:
        model: in eval mode.
        images: uint8 Tensor[N, C, H, W] at the size ``layer`` was found for.
        normalize: uint8 Tensor[B, C, H, W] -> the model's input Tensor[B, C, H, W].
        progress: show a tqdm bar.
    """
    prefix = LayerOutput(model, layer)
    c, h, w = layer.shape
    best, keys = torch.zeros(c, 0), torch.zeros(c, 0, dtype=torch.long)
    total = torch.zeros(c, dtype=torch.float64)
    starts = range(0, len(images), batch_size)
    with torch.no_grad():
        for s in tqdm(starts, desc=f"units of {layer.name}", unit="batch", leave=False, disable=not progress):
            acts = prefix(normalize(images[s : s + batch_size])).float().flatten(2).cpu()  # [B, K, h·w]
            peak, where = acts.max(2)  # [B, K]: each image's strongest unit per channel
            total += peak.sum(0).double()
            image = torch.arange(s, s + len(peak))[:, None]  # [B, 1]
            best, keys = merge_topk(best, keys, peak.T, (image * h * w + where).T, k)
    mean = (total / max(1, len(images))).float()
    return TopUnits(best, keys // (h * w), keys % (h * w) // w, keys % w, mean, len(images))


# ---- receptive fields -------------------------------------------------------------------------------------------
def receptive_box(field: Field, row: int, col: int, hw: Sequence[int] | None = None) -> tuple[int, int, int, int]:
    """Input rows ``[top, bottom)`` and columns ``[left, right)`` of unit (row, col)'s receptive field.

    On each axis the field is centred at ``start + i·jump`` and ``rf`` pixels wide; ``hw`` (H, W) clamps the box
    to the image.
    """
    box = []
    for axis, i in enumerate((row, col)):
        centre, half = field.start[axis] + i * field.j[axis], (field.r[axis] - 1) / 2
        lo, hi = math.ceil(centre - half - 1e-6), math.floor(centre + half + 1e-6) + 1
        if hw is not None:
            lo, hi = max(0, lo), min(int(hw[axis]), hi)
        box += [lo, hi]
    return box[0], box[1], box[2], box[3]


def patch(image: Tensor, field: Field, row: int, col: int, fill: float = float("nan")) -> Tensor:
    """The receptive field of unit (row, col) cut from image Tensor[C, H, W] -> float Tensor[C, rf_h, rf_w].

    Pixels of the field that lie outside the image are ``fill``.
    """
    top, bottom, left, right = receptive_box(field, row, col)
    out = torch.full((image.shape[0], bottom - top, right - left), fill)
    t, b, lf, rt = receptive_box(field, row, col, image.shape[-2:])
    out[:, t - top : b - top, lf - left : rt - left] = image[:, t:b, lf:rt].float()
    return out


# ---- deconvnet projection ---------------------------------------------------------------------------------------
def project(
    model: nn.Module, layer: UnitLayer, x: Tensor, channel: int, rows: Tensor, cols: Tensor, method: str = "deconv"
) -> Tensor:
    """Project one activation per image back to pixel space with Captum (ZF's deconvnet or guided backprop).

    Args:
        model: in eval mode.
        x: Tensor[N, C, H, W] model inputs (normalised).
        channel: the layer's channel.
        rows, cols: int Tensor[N]: the unit of each image.
        method: ``"deconv"`` (Captum ``Deconvolution``) or ``"guided"`` (``GuidedBackprop``).

    Returns:
        Tensor[N, C, H, W]: the projection of each image's chosen activation (every other one set to zero).
    """
    from captum.attr import Deconvolution, GuidedBackprop

    methods = {"deconv": Deconvolution, "guided": GuidedBackprop}
    if method not in methods:
        raise CnnkitError(f"expected a projection method ({', '.join(methods)}), found {method!r}")
    unit = UnitOutput(LayerOutput(model, layer), channel, rows, cols)
    with warnings.catch_warnings(), torch.enable_grad():
        warnings.simplefilter("ignore")  # Captum warns on every call that it hooks the ReLUs
        return methods[method](unit).attribute(x.detach().clone()).detach()


@dataclass
class ChannelView:
    """One channel's top units: ``values`` Tensor[k]; ``patches`` and ``projections`` Tensor[k, C, rf_h, rf_w]
    (the image, 0–1, and the projection, cropped to each unit's receptive field; NaN outside the image)."""

    channel: int
    values: Tensor
    patches: Tensor
    projections: Tensor


def channel_views(
    model: nn.Module,
    layer: UnitLayer,
    top: TopUnits,
    images: Tensor,
    normalize: Callable[[Tensor], Tensor],
    channels: Sequence[int],
    method: str = "deconv",
) -> list[ChannelView]:
    """Patches and projections of the top units of each of ``channels`` (images: uint8 Tensor[N, C, H, W])."""
    views = []
    for c in channels:
        idx, rows, cols = top.image[c], top.row[c], top.col[c]
        x = normalize(images[idx]).float()  # [k, C, H, W]
        proj = project(model, layer, x, c, rows.to(x.device), cols.to(x.device), method).cpu()
        cut = list(zip(rows.tolist(), cols.tolist()))
        patches = torch.stack([patch(images[n] / 255, layer.field, i, j) for n, (i, j) in zip(idx.tolist(), cut)])
        projs = torch.stack([patch(p, layer.field, i, j) for p, (i, j) in zip(proj, cut)])
        views.append(ChannelView(c, top.values[c], patches, projs))
    return views


def find_units(
    model: nn.Module,
    layer: str,
    images: Tensor,
    normalize: Callable[[Tensor], Tensor],
    channels: int | Sequence[int] = 8,
    k: int = 9,
    method: str = "deconv",
    batch_size: int = 256,
    progress: bool = True,
) -> tuple[UnitLayer, TopUnits, list[ChannelView]]:
    """The whole search for one layer: find it, pass over ``images``, project the top units of chosen channels.

    Args:
        model: in eval mode.
        layer: module name.
        images: uint8 Tensor[N, C, H, W] (the input size of the layer's receptive field).
        normalize: uint8 Tensor[B, C, H, W] -> the model's input.
        channels: how many of the most active channels, or which ones.
        k: top units per channel.
    """
    if images.ndim != 4 or len(images) == 0:
        raise CnnkitError(f"expected images Tensor[N, C, H, W] with N ≥ 1, found shape {tuple(images.shape)}")
    unit_layer = find_layer(model, layer, tuple(images.shape[1:]))
    top = top_units(model, unit_layer, images, normalize, k, batch_size, progress)
    n = unit_layer.shape[0]
    picks = top.most_active(channels) if isinstance(channels, int) else list(channels)
    if any(not 0 <= c < n for c in picks):
        raise CnnkitError(f"expected channels of {layer} in 0…{n - 1}, found {picks}")
    return unit_layer, top, channel_views(model, unit_layer, top, images, normalize, picks, method)


# ---- the figure -------------------------------------------------------------------------------------------------
def tile_grid(tiles: Tensor, cols: int) -> Tensor:
    """Tensor[k, C, h, w] in 0–1 (C = 1 or 3, NaN outside the image) -> one Tensor[H, W, 3] grid for imshow."""
    grid = make_grid(tiles.float().clamp(0, 1), nrow=cols, padding=1, pad_value=1.0).permute(1, 2, 0)  # [H, W, 3]
    nan = grid.isnan().any(-1)
    grid[nan] = torch.tensor(OUTSIDE)
    return grid


def signed_tiles(tiles: Tensor, q: float = 0.99) -> Tensor:
    """Projections Tensor[k, C, h, w] -> 0–1 for display: 0.5 is zero; each tile is scaled by the ``q`` quantile
    of its |values| (a few extreme pixels would otherwise leave the rest grey) and clipped."""
    scale = tiles.abs().flatten(1).nanquantile(q, dim=1).nan_to_num(0).clamp_min(1e-12)[:, None, None, None]
    return (tiles / (2 * scale) + 0.5).clamp(0, 1)


def plot_units(layer: UnitLayer, views: Sequence[ChannelView], path: str | Path, title: str = "") -> Path:
    """The ZF figure for one layer: per channel, its top image patches beside their deconvnet projections."""
    per_row = 1 if len(views) == 1 else 2
    rows = math.ceil(len(views) / per_row)
    fig = Figure(figsize=(3.6 * per_row, 1.95 * rows + 0.7))
    axes = fig.subplots(rows, 2 * per_row, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
        ax.set(xticks=[], yticks=[])  # not drawn either way; no tick artists to lay out makes the figure ~2x faster
    for n, v in enumerate(views):
        cols = math.ceil(math.sqrt(len(v.values)))
        left, right = axes[2 * n], axes[2 * n + 1]
        left.imshow(tile_grid(v.patches, cols).numpy(), interpolation="nearest")
        right.imshow(tile_grid(signed_tiles(v.projections), cols).numpy(), interpolation="nearest")
        left.set_title(f"channel {v.channel}: patches", fontsize=7)
        right.set_title(f"projections (max {float(v.values[0]):.2g})", fontsize=7)
    c, h, w = layer.shape
    (rh, rw), j = layer.rf, layer.field.j
    fig.suptitle(
        f"{title}{layer.name}: {h}×{w}×{c}, receptive field {rh}×{rw}, jump {j[0]:g}\n"
        f"top {len(views[0].values) if views else 0} images per channel: receptive-field patches | deconvnet",
        fontsize=8,
    )
    fig.tight_layout()
    return save_figure(fig, path, dpi=130)


# ---- a run's images ---------------------------------------------------------------------------------------------
def run_images(run_dir: str | Path, split: str = "val", data: str | None = None, data_dir: str | None = None) -> Tensor:
    """The images of a run's data split, at the run's input size: uint8 Tensor[N, C, H, W].

    Args:
        run_dir: a directory written by ``cnnkit train`` (its ``config.yaml`` names the data and the split seed).
        split: ``train``, ``val`` or ``test``.
        data: another dataset (a name or a folder) instead of the run's.
        data_dir: where named datasets are looked for, instead of the run's ``data.data_dir``.
    """
    from ..config import from_dict, load_yaml
    from ..data import load_data
    from ..runcard import read_card

    run_dir = Path(run_dir)
    if split not in SPLITS:
        raise CnnkitError(f"expected a split ({', '.join(SPLITS)}), found {split!r}")
    inp = read_card(run_dir).input
    if not (run_dir / "config.yaml").is_file():
        raise CnnkitError(f"expected a run directory with config.yaml, found {str(run_dir)!r}; pass a training run")
    cfg = from_dict(load_yaml(run_dir / "config.yaml"))
    data_cfg = replace(cfg.data, name=data or cfg.data.name, data_dir=data_dir or cfg.data.data_dir)
    ds = getattr(load_data(data_cfg, seed=cfg.train.seed, image_size=(inp.height, inp.width)), split)
    images = ds.images if hasattr(ds, "images") else torch.stack([ds[i][0] for i in range(len(ds))])
    if len(images) == 0:
        raise CnnkitError(f"expected images in the {split} split of {data_cfg.name}, found none; try --split test")
    return images
