"""What a trained CNN looks at: first-layer filters, feature maps, Grad-CAM, occlusion, hand-made vs learned filters.

All functions take a model in eval mode and a normalised image ``x: Tensor[1, C, H, W]``; the ``plot_*``
functions write a titled PNG with matplotlib's object API (Agg canvas, no global pyplot state).

- Grad-CAM (Selvaraju et al. 2017): weight each channel of a late feature map by the spatial mean of the class
  score's gradient, sum, ReLU, upsample: ``cam = ReLU(Σ_k mean_ij(∂y_c/∂A^k_ij) · A^k)``. Computed by Captum's
  ``LayerGradCam`` (the layer's last call, for a module that runs twice).
- Occlusion sensitivity (Zeiler & Fergus 2014): slide a patch of the dataset mean (0 after normalisation) over
  the image and record the probability of the class; where it drops is what the decision rests on. Written here
  rather than with Captum's ``Occlusion`` (which agrees where the windows tile the image) because the last window
  on each axis is kept flush with the border, so no border strip is left uncovered.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor, nn
from torchvision.utils import make_grid

from ..conv.kernels import KERNELS
from ..conv.ops import filter2d
from ..errors import CnnkitError
from ..io import save_figure

HAND_MADE = ("edge1", "edge3", "sobel_x", "sobel_y", "sharpen", "gaussian3")


# ---- layers ----------------------------------------------------------------------------------------------------
def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """The first ``nn.Conv2d`` in module order (the layer that sees pixels)."""
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            return name, m
    raise CnnkitError(f"expected a convolutional layer in {type(model).__name__}, found none; nothing to show")


def map_layers(model: nn.Module, x: Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """Leaf modules whose output is a spatial map (not pools), in execution order, with their output shapes."""
    found: list[tuple[str, tuple[int, ...]]] = []
    handles = []

    def record(name: str) -> Callable[..., None]:
        def hook(m: nn.Module, a: tuple, out: Tensor) -> None:
            if _is_map(out):
                found.append((name, tuple(out.shape[1:])))

        return hook

    for name, m in model.named_modules():
        if not any(True for _ in m.children()) and not isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.Dropout)):
            handles.append(m.register_forward_hook(record(name)))
    forward_with_hooks(model, x, handles)
    last = {n: i for i, (n, _) in enumerate(found)}  # a module called twice counts where it last ran
    return [(n, s) for i, (n, s) in enumerate(found) if last[n] == i]


def forward_with_hooks(model: nn.Module, x: Tensor, handles: list) -> None:
    """One no-grad forward pass of x: Tensor[N, C, H, W] with the given hooks attached, then remove them."""
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()


def _is_map(out: object) -> bool:
    return isinstance(out, Tensor) and out.ndim == 4 and out.shape[-1] * out.shape[-2] > 1


def default_layers(model: nn.Module, x: Tensor) -> list[str]:
    """Low, mid and high-level layers: the first, middle and last map-producing layers."""
    names = [n for n, _ in map_layers(model, x)]
    if not names:
        raise CnnkitError(f"expected layers with spatial outputs in {type(model).__name__}, found none")
    picks = [names[0], names[len(names) // 2], names[-1]]
    return list(dict.fromkeys(picks))


def capture(model: nn.Module, x: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
    """Outputs of the named modules for ``x`` (each Tensor[C, h, w], from the module's last call)."""
    modules = dict(model.named_modules())
    unknown = [n for n in layers if n not in modules]
    if unknown:
        raise CnnkitError(
            f"expected layer names of {type(model).__name__}, found {', '.join(unknown)};"
            " `cnnkit explain RUN` lists them in its first column"
        )
    maps: dict[str, Tensor] = {}

    def keep(name: str) -> Callable[..., None]:
        def hook(m: nn.Module, a: tuple, out: Tensor) -> None:  # returns None: the output is not replaced
            maps[name] = out[0].detach().clone()  # the last call, for modules called more than once

        return hook

    forward_with_hooks(model, x, [modules[n].register_forward_hook(keep(n)) for n in layers])
    flat = [f"{n} (Tensor{list(m.shape)})" for n, m in maps.items() if m.ndim != 3]
    if flat:
        raise CnnkitError(
            f"expected layers with feature maps (C×h×w), found {', '.join(flat)}; pick convolutional layers such as"
            f" {', '.join(default_layers(model, x))}"
        )
    return maps


# ---- attribution ------------------------------------------------------------------------------------------------
def grad_cam(model: nn.Module, x: Tensor, target: int | None = None, layer: str | None = None) -> tuple[Tensor, int]:
    """Grad-CAM heat map for class ``target`` (default: the predicted class).

    Args:
        model: classifier in eval mode.
        x: Tensor[1, C, H, W] normalised image.
        target: class index.
        layer: module whose output map A is weighted (default: the last map-producing layer).

    Returns:
        (cam Tensor[H, W] in 0–1, upsampled to the input; the class index explained).
    """
    from captum.attr import LayerGradCam

    layer = layer or default_layers(model, x)[-1]
    if target is None:
        with torch.no_grad():
            target = int(model(x).argmax(1))
    module = dict(model.named_modules())[layer]
    with torch.enable_grad():
        cam = LayerGradCam(model, module).attribute(x, target=target, relu_attributions=True).detach()  # [1, 1, h, w]
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    return cam / cam.max() if cam.max() > 0 else cam, target


@torch.no_grad()
def occlusion(
    model: nn.Module, x: Tensor, target: int, patch: int, stride: int, batch_size: int = 64
) -> tuple[Tensor, float]:
    """Probability of ``target`` while a mean-valued square patch covers each pixel (batched forward passes).

    Args:
        x: Tensor[1, C, H, W] normalised (so 0 is the dataset mean).
        patch: side of the square occluder in pixels.
        stride: step between occluder positions (the last row/column of positions touches the border).

    Returns:
        (Tensor[H, W]: for each pixel, the mean probability over the occluder positions covering it;
        the unoccluded probability).
    """
    _, _, h, w = x.shape
    patch = min(patch, h, w)
    spots = [(i, j) for i in _starts(h, patch, stride) for j in _starts(w, patch, stride)]
    total, count = torch.zeros(h, w), torch.zeros(h, w)
    for k in range(0, len(spots), batch_size):
        chunk = spots[k : k + batch_size]
        xs = x.repeat(len(chunk), 1, 1, 1)
        for b, (i, j) in enumerate(chunk):
            xs[b, :, i : i + patch, j : j + patch] = 0
        probs = torch.softmax(model(xs).float(), 1)[:, target].cpu()
        for p, (i, j) in zip(probs, chunk):
            total[i : i + patch, j : j + patch] += p
            count[i : i + patch, j : j + patch] += 1
    base = float(torch.softmax(model(x).float(), 1)[0, target])
    return total / count, base


def _starts(n: int, patch: int, stride: int) -> list[int]:
    """Occluder start positions along one axis, the last one flush with the border."""
    starts = list(range(0, n - patch + 1, stride))
    return starts if starts[-1] == n - patch else [*starts, n - patch]


# ---- figures ----------------------------------------------------------------------------------------------------
def _image(x: Tensor) -> Tensor:
    """Normalised Tensor[1, C, H, W] -> displayable Tensor[H, W] or Tensor[H, W, 3] in 0–1 (min–max)."""
    a = x[0].detach().float()
    a = (a - a.min()) / (a.max() - a.min() + 1e-12)
    return a[0] if a.shape[0] != 3 else a.permute(1, 2, 0)


def _axes(fig: Figure, n: int, cols: int) -> list:
    rows = math.ceil(n / cols)
    grid = fig.subplots(rows, cols, squeeze=False)
    axes = [ax for row in grid for ax in row]
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[n:]:
        ax.set_axis_off()
    return axes


def mosaic(tiles: Tensor, cols: int, pad: float = 1.0) -> Tensor:
    """Tensor[N, C, h, w] (C = 1 or 3) -> one Tensor[H, W, 3] grid, each tile min–max scaled on its own."""
    grid = make_grid(tiles.float().cpu(), nrow=cols, padding=1, normalize=True, scale_each=True, pad_value=pad)
    return grid.permute(1, 2, 0)


def plot_filters(model: nn.Module, path: str | Path, title: str = "") -> Path:
    """The first conv layer's filters as an image grid (RGB for 3 input channels, else the channel mean)."""
    name, conv = first_conv(model)
    w = conv.weight.detach()  # [out, in, kh, kw]
    w = w if w.shape[1] == 3 else w.mean(1, keepdim=True)  # [out, 3 | 1, kh, kw]
    cols = min(16, math.ceil(math.sqrt(len(w))))
    rows = math.ceil(len(w) / cols)
    fig = Figure(figsize=(max(4.0, cols * 0.6), rows * 0.6 + 0.9))
    ax = _axes(fig, 1, 1)[0]
    ax.imshow(mosaic(w, cols).numpy(), interpolation="nearest")
    k = "×".join(map(str, conv.kernel_size))
    ax.set_title(
        f"{title}\nfirst-layer filters: {name}, {conv.out_channels} filters of {k}×{conv.in_channels}", fontsize=9
    )
    return save_figure(fig, path)


def plot_feature_maps(
    maps: dict[str, Tensor], x: Tensor, path: str | Path, title: str = "", per_layer: int = 8
) -> Path:
    """For each layer, its ``per_layer`` most active channels (by mean activation) as one strip, next to the input."""
    fig = Figure(figsize=(1.2 * (per_layer + 1), 1.5 * len(maps) + 0.6))
    axes = fig.subplots(len(maps), 2, squeeze=False, gridspec_kw={"width_ratios": [1, per_layer]}).ravel()
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    for r, (name, fmap) in enumerate(maps.items()):
        top = fmap.float().mean((1, 2)).argsort(descending=True)[:per_layer].tolist()
        axes[2 * r].imshow(_image(x).cpu().numpy(), cmap="gray")
        axes[2 * r].set_title("input" if r == 0 else "", fontsize=7)
        axes[2 * r + 1].imshow(mosaic(fmap[top][:, None], per_layer, float("nan"))[..., 0].numpy(), cmap="viridis")
        h, w, c = fmap.shape[1], fmap.shape[2], fmap.shape[0]
        axes[2 * r + 1].set_title(f"{name}: {h}×{w}×{c}, channels {', '.join(map(str, top))}", fontsize=7)
    fig.suptitle(f"{title}feature maps, low to high level (most active channels)", fontsize=9)
    return save_figure(fig, path)


def plot_heatmap(x: Tensor, heat: Tensor, path: str | Path, title: str, label: str, cmap: str = "jet") -> Path:
    """Input | heat map | overlay, one titled row. heat: Tensor[h, w] (upsampled for the overlay)."""
    fig = Figure(figsize=(9, 3.4))
    axes = _axes(fig, 3, 3)
    img = _image(x).cpu().numpy()
    big = F.interpolate(heat[None, None].float(), size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    axes[0].imshow(img, cmap="gray")
    axes[0].set_title("input", fontsize=8)
    im = axes[1].imshow(heat.cpu().numpy(), cmap=cmap, interpolation="nearest")
    axes[1].set_title(label, fontsize=8)
    fig.colorbar(im, ax=axes[1], fraction=0.046)
    axes[2].imshow(img, cmap="gray")
    axes[2].imshow(big.cpu().numpy(), cmap=cmap, alpha=0.5)
    axes[2].set_title("overlay", fontsize=8)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def plot_kernels_vs_filters(model: nn.Module, x: Tensor, path: str | Path, title: str = "", count: int = 6) -> Path:
    """Row 1: hand-made kernels on the image (grayscale); row 2: the learned first-layer filters on it."""
    name, conv = first_conv(model)
    gray = x[0].detach().float().mean(0)  # [H, W]
    with torch.no_grad():
        learned = conv(x)[0]  # [out, H', W']
    top = learned.abs().mean((1, 2)).argsort(descending=True)[:count].tolist()
    fig = Figure(figsize=(1.7 * (count + 1), 4.0))
    axes = _axes(fig, 2 * (count + 1), count + 1)
    for r in (0, count + 1):
        axes[r].imshow(_image(x).cpu().numpy(), cmap="gray")
        axes[r].set_title("input", fontsize=7)
    for ax, k in zip(axes[1 : count + 1], HAND_MADE):
        ax.imshow(filter2d(gray.double(), KERNELS[k].tensor(), padding=KERNELS[k].size[0] // 2).numpy(), cmap="gray")
        ax.set_title(f"hand-made {k}", fontsize=7)
    for ax, c in zip(axes[count + 2 :], top):
        ax.imshow(learned[c].cpu().numpy(), cmap="gray")
        ax.set_title(f"learned {name}[{c}]", fontsize=7)
    fig.suptitle(f"{title}hand-made kernels (top) vs learned first-layer filters (bottom), same image", fontsize=9)
    return save_figure(fig, path)
