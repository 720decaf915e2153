"""Error analysis: the examples the model is most wrong about, shown as a gallery."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ..data.splits import describe_split
from .ensemble import Evaluation
from .metrics import example_losses
from .plots import plot_gallery


def top_losses(log_probs: Tensor, labels: Tensor, n: int = 16) -> Tensor:
    """Indices Tensor[min(n, N)] of the examples with the largest cross-entropy, largest first."""
    losses = example_losses(log_probs, labels)
    return losses.topk(min(n, len(losses))).indices


def write_gallery(evaluation: Evaluation, path: str | Path, n: int = 16) -> Path:
    """PNG of the ``n`` top-loss examples of the evaluation's headline predictions (image, true, predicted, p)."""
    ev = evaluation.eval_set
    log_probs = evaluation.headline()
    idx = top_losses(log_probs, ev.labels, n).tolist()
    dataset = next(iter(ev.datasets.values()))
    images = torch.stack([dataset[i][0] for i in idx]) if idx else torch.zeros(0, 1, 1, 1, dtype=torch.uint8)
    probs = log_probs[idx].exp()
    pred = probs.argmax(1)
    true = ev.labels[idx]
    return plot_gallery(
        images,
        [ev.classes[t] for t in true.tolist()],
        [ev.classes[p] for p in pred.tolist()],
        probs.gather(1, pred[:, None])[:, 0].tolist(),
        probs.gather(1, true[:, None])[:, 0].tolist(),
        path,
        title=f"top {len(idx)} losses, {describe_split(ev.split)} (largest first)",
    )
