"""PNG plots for people: the confusion matrix and a gallery of the worst mistakes.

Built on matplotlib's object API with the Agg canvas (no pyplot, no global backend switch, no display).
Every plot has a title, labelled axes and class names, never bare class indices.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from ..io import save_figure


def plot_confusion(
    counts: np.ndarray, classes: Sequence[str], path: str | Path, title: str = "confusion matrix"
) -> Path:
    """Heat map of the row-normalised confusion matrix counts[K, K] (rows true, columns predicted), counts
    written in the cells when K ≤ 20. Rows of classes with no examples are blank."""
    counts = np.asarray(counts)
    k = len(classes)
    totals = counts.sum(1, keepdims=True)
    rates = np.divide(counts, totals, out=np.full(counts.shape, np.nan), where=totals > 0)
    side = min(4 + 0.55 * k, 24)
    fig = Figure(figsize=(side + 1.5, side), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, label="fraction of the true class")
    slanted = max(len(c) for c in classes) > 3
    ax.set_xticks(range(k), classes, rotation=45 if slanted else 0, ha="right" if slanted else "center")
    ax.set_yticks(range(k), classes)
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    if k <= 20:
        for t in range(k):
            for p in range(k):
                if counts[t, p]:
                    white = rates[t, p] > 0.5
                    ax.text(p, t, str(counts[t, p]), ha="center", va="center", color="white" if white else "black")
    return save_figure(fig, path)


def plot_gallery(
    images: Tensor,
    true: Sequence[str],
    predicted: Sequence[str],
    p_pred: Sequence[float],
    p_true: Sequence[float],
    path: str | Path,
    title: str = "top losses",
) -> Path:
    """A grid of images uint8 Tensor[M, C, H, W], each captioned with its predicted class and probability
    and its true class and probability (red when wrong)."""
    m = len(images)
    cols = min(m, 8) or 1
    rows = max(1, -(-m // cols))
    height = 2.2 * rows + 0.7
    fig = Figure(figsize=(1.9 * cols, height))  # fixed spacing: constrained layout is slow for many small axes
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.75 / height, wspace=0.1, hspace=0.4)
    for ax in axes:
        ax.axis("off")
    for ax, img, t, p, pp, pt in zip(axes, images, true, predicted, p_pred, p_true):
        a = img.permute(1, 2, 0).numpy()
        ax.imshow(a[..., 0] if a.shape[2] == 1 else a, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(f"pred {p} {pp:.0%}\ntrue {t} {pt:.0%}", fontsize=8, color="black" if t == p else "firebrick")
    fig.suptitle(title)
    return save_figure(fig, path)
