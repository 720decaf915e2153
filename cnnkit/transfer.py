"""Transfer learning: a pretrained body, a new head, frozen groups, per-group learning rates, and linear probes.

Fine-tuning (``cnnkit train --model NAME --pretrained``) builds the model from published weights with a fresh
head for the dataset's classes (and a first convolution adapted to 1-channel images); the trainer then applies
the freeze plan and per-group learning rates of :mod:`cnnkit.engine.freeze` (training concerns, on every run).

Linear probes (``cnnkit features``): pooled features of a frozen pretrained model (``forward_head(…,
pre_logits=True)``) for every split, saved to ``.npz``, and optionally a linear SVM or logistic regression
(scikit-learn) trained on them and scored with the evaluate package's metrics.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits
from torch import Tensor, nn
from torch.utils.data import Dataset

from .data import DataSplits
from .errors import CnnkitError
from .evaluate.metrics import score
from .evaluate.tables import SUMMARY_HEADERS, per_class_table, summary_row, text_table
from .io import atomic_write
from .runtime import Normalize, autocast, batches, inference_copy

CLASSIFIERS = ("logistic", "svm")


# ---- frozen features and linear classifiers ---------------------------------------------------------------------
@torch.no_grad()
def extract_features(
    model: nn.Module, dataset: Dataset, normalize: Normalize, batch_size: int = 128, dtype: torch.dtype | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled pre-logits features of every image -> (float32 [N, num_features], int64 labels [N])."""
    model.eval()
    feats, labels = [], []
    for x, y in batches(dataset, batch_size):
        with autocast(normalize.device, dtype):
            feats.append(model.forward_head(model.forward_features(normalize(x)), pre_logits=True).float().cpu())
        labels.append(y)
    if not feats:
        return np.zeros((0, model.num_features), np.float32), np.zeros(0, np.int64)
    return torch.cat(feats).numpy(), torch.cat(labels).numpy().astype(np.int64)


def fit_linear(kind: str, x: np.ndarray, y: np.ndarray, c: float = 1.0, seed: int = 0) -> Pipeline:
    """Standardise, then a linear SVM (``svm``) or multinomial logistic regression (``logistic``). x: [N, D]."""
    if kind not in CLASSIFIERS:
        raise CnnkitError(f"expected --classifier one of {', '.join(CLASSIFIERS)}, found {kind!r}")
    if len(np.unique(y)) < 2:
        raise CnnkitError(f"expected training images of at least 2 classes, found {len(np.unique(y))}; add images")
    clf = LinearSVC(C=c, random_state=seed) if kind == "svm" else LogisticRegression(C=c, max_iter=2000)
    with threadpool_limits(1):  # measured: OpenBLAS's threads contending for busy cores made lbfgs ~100× slower
        return make_pipeline(StandardScaler(), clf).fit(x, y)


def class_log_probs(clf: Pipeline, x: np.ndarray, num_classes: int) -> Tensor:
    """Log-probabilities Tensor[N, num_classes]: the log-softmax of the decision values (for logistic regression
    exactly its ``predict_log_proba``, without its log(0) = -inf; for an SVM a monotone score). Classes unseen in
    training get a probability of about 1e-12."""
    d = torch.from_numpy(clf.decision_function(x)).double()
    scores = torch.log_softmax(torch.stack([-d / 2, d / 2], 1) if d.ndim == 1 else d, 1)  # binary: sigmoid(d)
    out = torch.full((len(x), num_classes), float(np.log(1e-12)), dtype=torch.float64)
    out[:, torch.as_tensor(clf.classes_)] = scores
    return torch.log_softmax(out, 1).float()


def features_for(model: nn.Module, data: DataSplits, device: str = "cpu") -> dict[str, np.ndarray]:
    """Features and labels of every split: ``{"train_features": [N, D], "train_labels": [N], …}``."""
    dev = torch.device(device)
    normalize = Normalize(model.mean, model.std, dev, channels_last=True)
    # fp32 (bf16 autocast is ~10× slower for Lite0 on these CPUs), on the folded copy: BatchNorm folded into the
    # convs, channels_last; Lite0 at 96×96, batch 128: 1.4× faster than the channels_last model (2-core AMD EPYC)
    fast = inference_copy(model.to(dev), torch.zeros(1, data.in_chans, *data.image_size, device=dev))
    out: dict[str, np.ndarray] = {}
    for split in ("train", "val", "test"):
        out[f"{split}_features"], out[f"{split}_labels"] = extract_features(fast, getattr(data, split), normalize)
    return out


def linear_probe(
    features: dict[str, np.ndarray], classes: list[str], kind: str = "logistic", c: float = 1.0, seed: int = 0
) -> dict[str, Any]:
    """Train ``kind`` on the train features; metrics (``evaluate.metrics.score``) on val and test, when present."""
    clf = fit_linear(kind, features["train_features"], features["train_labels"], c, seed)
    out = {}
    for split in ("val", "test"):
        x, y = features[f"{split}_features"], features[f"{split}_labels"]
        if len(y):
            out[split] = score(class_log_probs(clf, x, len(classes)), torch.from_numpy(y), classes)
    return out


def save_features(path: str | Path, features: dict[str, np.ndarray], classes: list[str], model: str) -> Path:
    """Write the features atomically to an ``.npz`` (plus ``classes`` and ``model``)."""

    def write(tmp: str) -> None:
        buf = io.BytesIO()
        np.savez(buf, **features, classes=np.array(classes), model=np.array(model))
        Path(tmp).write_bytes(buf.getvalue())

    return atomic_write(path, write)


def format_probe(metrics: dict[str, Any], name: str) -> str:
    """The summary table (one row per split), then the per-class table of the test split (else val)."""
    rows = [summary_row(f"{name} ({split})", m) for split, m in metrics.items()]
    last = metrics.get("test") or metrics.get("val")
    return "\n".join([text_table((SUMMARY_HEADERS, rows)), "per class:", text_table(per_class_table(last))])
