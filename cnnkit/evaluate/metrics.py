"""Classification metrics of a model on a dataset, computed with torchmetrics and scikit-learn.

:func:`score` turns log-probabilities and labels into everything ``cnnkit evaluate`` reports: loss,
top-1 / top-5 accuracy and error, per-class precision, recall, F1 and support, their macro and weighted
averages, one-vs-rest ROC-AUC per class and macro, and the confusion matrix (counts and row-normalised).

Edge cases, decided once here:

- A class that is never predicted has precision 0 (scikit-learn's ``zero_division=0``; no warning).
- A class with no examples in the split has recall, F1 and ROC-AUC undefined: they are reported as ``None``
  and left out of the macro averages (which average over the classes present in the split). Its precision
  is 0 (every prediction of it is wrong, or there are none). The weighted averages give it weight 0.
- Macro-F1 is therefore the mean F1 over the classes present in the split (:func:`macro_f1`). It is the one
  definition cnnkit uses: the report, ``cnnkit evaluate`` and model selection (``val_macro_f1``) all call it.
- ROC-AUC also needs negatives: a class that is every example of the split has ROC-AUC ``None`` as well.
- A row of the normalised confusion matrix for a class with no examples is all ``None``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..runtime import Normalize, autocast, batches


@torch.no_grad()
def collect_logits(
    model: nn.Module,
    dataset: Dataset,
    normalize: Normalize,
    *,
    batch_size: int = 256,
    dtype: torch.dtype | None = None,
    num_workers: int = 0,
    transform: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Run ``model`` (in eval mode) over ``dataset`` -> (float32 logits Tensor[N, K], labels Tensor[N]).

    ``transform`` maps each uint8 batch Tensor[B, C, H, W] before normalisation (e.g. a horizontal flip).
    """
    was_training = model.training
    model.eval()
    out, labels = [], []
    try:
        for x, y in batches(dataset, batch_size, num_workers=num_workers):
            x = transform(x) if transform is not None else x
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
    n = len(logits)
    if n == 0:
        return {"n": 0}
    return {"n": n, **_topk_and_loss(torch.log_softmax(logits.float(), 1), labels)}


def _topk_and_loss(log_probs: Tensor, labels: Tensor) -> dict[str, float]:
    from torchmetrics.functional.classification import multiclass_accuracy  # ~2 s to import: only when scored

    k = log_probs.shape[1]
    acc1 = multiclass_accuracy(log_probs, labels, num_classes=k, top_k=1, average="micro").item()
    acc5 = multiclass_accuracy(log_probs, labels, num_classes=k, top_k=min(5, k), average="micro").item()
    return {
        "loss": F.nll_loss(log_probs, labels).item(),
        "top1_accuracy": acc1,
        "top5_accuracy": acc5,
        "top1_error": 1 - acc1,
        "top5_error": 1 - acc5,
    }


def score(log_probs: Tensor, labels: Tensor, classes: Sequence[str]) -> dict[str, Any]:
    """Every reported metric of one set of predictions.

    Args:
        log_probs: Tensor[N, K] log class probabilities (``log_softmax`` of logits, or of an ensemble).
        labels: Tensor[N] true class indices.
        classes: K class names, used as keys of the per-class results.

    Returns:
        JSON-ready dict: ``n``, ``loss``, ``top1_accuracy`` … ``top5_error``, ``top5_k`` (5, or K if K < 5),
        ``per_class`` {name: {precision, recall, f1, support, roc_auc}}, ``macro`` and ``weighted``
        {precision, recall, f1 (, roc_auc)}, ``confusion`` {counts, normalized} (rows true, columns predicted)
        and ``most_confused``. Undefined values are ``None`` (see the module docstring).
    """
    n, k = log_probs.shape
    if n == 0:
        return {"n": 0}
    log_probs, labels = log_probs.float(), labels.long()
    y, pred = labels.numpy(), log_probs.argmax(1).numpy()
    probs = log_probs.double().exp().numpy()
    per_class, macro, weighted = _per_class(y, pred, probs, classes)
    from sklearn.metrics import confusion_matrix  # imported when scored: scikit-learn takes ~1.5 s to import

    counts = confusion_matrix(y, pred, labels=np.arange(k))
    return {
        "n": n,
        **_topk_and_loss(log_probs, labels),
        "top5_k": min(5, k),
        "per_class": per_class,
        "macro": macro,
        "weighted": weighted,
        "confusion": {"counts": counts.tolist(), "normalized": _row_normalized(counts)},
        "most_confused": most_confused(counts, classes),
    }


def _per_class(
    y: np.ndarray, pred: np.ndarray, probs: np.ndarray, classes: Sequence[str]
) -> tuple[dict[str, dict], dict[str, float | None], dict[str, float | None]]:
    """Per-class P/R/F1/support/ROC-AUC, the macro average over present classes, the support-weighted average."""
    from sklearn.metrics import precision_recall_fscore_support

    k = len(classes)
    p, r, f1, support = precision_recall_fscore_support(y, pred, labels=np.arange(k), zero_division=0.0)
    auc = [roc_auc_one_vs_rest(y == c, probs[:, c]) for c in range(k)]
    present = support > 0
    per_class = {
        name: {
            "precision": float(p[c]),
            "recall": float(r[c]) if present[c] else None,
            "f1": float(f1[c]) if present[c] else None,
            "support": int(support[c]),
            "roc_auc": auc[c],
        }
        for c, name in enumerate(classes)
    }
    defined_auc = [a for a in auc if a is not None]
    macro: dict[str, float | None] = {
        key: _macro(v, present) for key, v in (("precision", p), ("recall", r), ("f1", f1))
    }
    macro["roc_auc"] = float(np.mean(defined_auc)) if defined_auc else None
    weighted: dict[str, float | None] = {
        key: float(np.average(v, weights=support)) for key, v in (("precision", p), ("recall", r), ("f1", f1))
    }
    return per_class, macro, weighted


def macro_f1(pred: Tensor | np.ndarray, labels: Tensor | np.ndarray, num_classes: int) -> float:
    """Macro-F1 of predicted classes pred[N] against labels[N]: the mean F1 over the classes present in ``labels``.

    A class with no examples has no F1 and is left out; a class with examples that is never predicted counts
    with F1 0. The same figure as ``score(...)["macro"]["f1"]``; NaN when there are no examples.
    """
    from sklearn.metrics import precision_recall_fscore_support

    y, p = np.asarray(labels), np.asarray(pred)
    if len(y) == 0:
        return float("nan")
    _, _, f1, support = precision_recall_fscore_support(y, p, labels=np.arange(num_classes), zero_division=0.0)
    return _macro(f1, support > 0)


def _macro(values: np.ndarray, present: np.ndarray) -> float:
    """The macro average: the mean of values[K] over the classes present in the split (bool[K])."""
    return float(values[present].mean())


def roc_auc_one_vs_rest(is_class: np.ndarray, class_prob: np.ndarray) -> float | None:
    """ROC-AUC of ``class_prob`` Tensor[N] separating ``is_class`` bool[N] from the rest; None if one side is empty."""
    from sklearn.metrics import roc_auc_score

    positives = int(is_class.sum())
    if positives == 0 or positives == len(is_class):
        return None
    return float(roc_auc_score(is_class, class_prob))


def _row_normalized(counts: np.ndarray) -> list[list[float | None]]:
    """Each row divided by its sum (the fraction of a true class predicted as each class); None rows if empty."""
    rows = []
    for row in counts:
        total = row.sum()
        rows.append((row / total).tolist() if total else [None] * len(row))
    return rows


def most_confused(counts: np.ndarray, classes: Sequence[str], top: int = 5) -> list[dict[str, Any]]:
    """The ``top`` largest off-diagonal cells of a confusion matrix counts[K, K] (rows true, columns predicted)."""
    off = counts.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:top]
    pairs = []
    for flat in order:
        t, p = divmod(int(flat), counts.shape[1])
        if off[t, p] == 0:
            break
        pairs.append(
            {
                "true": classes[t],
                "predicted": classes[p],
                "count": int(off[t, p]),
                "rate": float(off[t, p] / counts[t].sum()),
            }
        )
    return pairs


def example_losses(log_probs: Tensor, labels: Tensor) -> Tensor:
    """Per-example cross-entropy Tensor[N] = −log p(true class) from log_probs Tensor[N, K], labels Tensor[N]."""
    return -log_probs.float().gather(1, labels.long()[:, None])[:, 0]
