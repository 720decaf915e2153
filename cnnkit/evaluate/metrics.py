"""Top-k accuracy and loss of a model on a dataset, computed with torchmetrics."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset
from torchmetrics.functional.classification import multiclass_accuracy

from ..engine.runtime import Normalize, autocast, batches


@torch.no_grad()
def collect_logits(
    model: nn.Module,
    dataset: Dataset,
    normalize: Normalize,
    *,
    batch_size: int = 256,
    dtype: torch.dtype | None = None,
    num_workers: int = 0,
) -> tuple[Tensor, Tensor]:
    """Run ``model`` (in eval mode) over ``dataset`` -> (float32 logits Tensor[N, K], labels Tensor[N])."""
    was_training = model.training
    model.eval()
    out, labels = [], []
    try:
        for x, y in batches(dataset, batch_size, num_workers=num_workers):
            with autocast(normalize.device, dtype):
                out.append(model(normalize(x)).float().cpu())
            labels.append(y)
    finally:
        model.train(was_training)
    k = getattr(model, "num_classes", 0)
    return (torch.cat(out) if out else torch.zeros(0, k)), (
        torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)
    )


def classification_metrics(logits: Tensor, labels: Tensor) -> dict[str, float]:
    """logits Tensor[N, K], labels Tensor[N] -> loss, top-1 / top-5 accuracy and error (top-5 is top-K if K < 5)."""
    n, k = logits.shape
    if n == 0:
        return {"n": 0}
    top5 = min(5, k)
    acc1 = multiclass_accuracy(logits, labels, num_classes=k, top_k=1, average="micro").item()
    acc5 = multiclass_accuracy(logits, labels, num_classes=k, top_k=top5, average="micro").item()
    return {
        "n": n,
        "loss": F.cross_entropy(logits, labels).item(),
        "top1_accuracy": acc1,
        "top5_accuracy": acc5,
        "top1_error": 1 - acc1,
        "top5_error": 1 - acc5,
    }
