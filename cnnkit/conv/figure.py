"""PNG figures for the convolution lab, drawn with matplotlib's object API (Agg canvas, no pyplot state)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure
from torch import Tensor

from ..io import save_figure


def show_map(ax, image: Tensor, title: str, preserves_brightness: bool = False) -> None:
    """Draw one Tensor[H, W] map in gray: clipped to [0, 1] for brightness-preserving kernels, else min–max."""
    a = image.detach().float().cpu().numpy()
    vmin, vmax = (0.0, 1.0) if preserves_brightness else (float(a.min()), float(a.max()) or 1.0)
    ax.imshow(a, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def side_by_side(maps: Sequence[Tensor], titles: Sequence[str], path: str | Path, suptitle: str = "") -> Path:
    """Save maps (each Tensor[H, W]) in one row with their titles; the first one is shown clipped to [0, 1]."""
    fig = Figure(figsize=(3.2 * len(maps), 3.6))
    axes = fig.subplots(1, len(maps), squeeze=False)[0]
    for i, (ax, m, t) in enumerate(zip(axes, maps, titles)):
        show_map(ax, m, t, preserves_brightness=i == 0)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return save_figure(fig, path)
