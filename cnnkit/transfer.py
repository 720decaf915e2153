"""Transfer learning: a pretrained body, a new head, frozen groups, per-group learning rates, and linear probes.

Fine-tuning (``cnnkit train --model NAME --pretrained``) builds the model from published weights with a fresh
head for the dataset's classes (and a first convolution adapted to 1-channel images), keeps the groups named by
``model.freeze`` frozen (their BatchNorm layers in eval mode, so their running statistics stay the pretrained
ones), trains every other group at ``optim.lr × optim.backbone_lr_mult`` and the head at ``optim.lr``, and with
``train.head_epochs = E`` first trains the head alone for E epochs (body frozen), then everything.

Groups are the model's own ``group_matcher()`` groups (stem, stages…, head). A freeze spec is ``none``,
``all-but-head``, ``N`` (the first N groups) or a comma-separated list of group names.

Linear probes (``cnnkit features``): pooled features of a frozen pretrained model (``forward_head(…,
pre_logits=True)``) for every split, saved to ``.npz``, and optionally a linear SVM or logistic regression
(scikit-learn) trained on them and scored with the evaluate package's metrics.
"""

from __future__ import annotations

import argparse
import difflib
import io
import json
from dataclasses import dataclass, field
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
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import Dataset

from .config import Config, DataConfig, OptimConfig
from .data import DataSplits, load_data
from .engine.checkpoint import atomic_write, write_json
from .engine.runtime import Normalize, autocast, batches
from .errors import CnnkitError
from .evaluate.cli import json_safe
from .evaluate.metrics import score
from .evaluate.tables import SUMMARY_HEADERS, per_class_table, summary_row, text_table
from .models import create_model, model_info, parameter_groups

CLASSIFIERS = ("logistic", "svm")


# ---- head and body ----------------------------------------------------------------------------------------------
def is_pretrained(cfg: Config) -> bool:
    """Whether the run starts from weights (the table's or a local file) rather than from scratch."""
    return cfg.model.pretrained or cfg.model.weights is not None


def headless(model: nn.Module) -> nn.Module:
    """Drop the classifier in place: ``model(x)`` then gives pooled features Tensor[N, num_features]."""
    model.reset_classifier(0)
    return model


def new_head(model: nn.Module, num_classes: int) -> nn.Module:
    """A fresh, randomly initialised head for ``num_classes`` classes, in place."""
    model.reset_classifier(num_classes)
    return model


def resolve_freeze(model: nn.Module, spec: str) -> list[str]:
    """Group names a freeze ``spec`` selects, in group order (see the module docstring for the forms)."""
    groups = list(model.group_matcher())
    spec = spec.strip()
    if spec in ("", "none", "0"):
        return []
    if spec == "all-but-head":
        return [g for g in groups if g != "head"]
    if spec.isdigit():
        if int(spec) > len(groups):
            raise CnnkitError(f"expected model.freeze at most {len(groups)} (the groups {groups}), found {spec}")
        return groups[: int(spec)]
    names = [n.strip() for n in spec.split(",") if n.strip()]
    for n in names:
        if n not in groups:
            close = difflib.get_close_matches(n, groups, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"the groups are {', '.join(groups)}"
            raise CnnkitError(f"expected model.freeze to name groups of {type(model).__name__}, found {n!r}; {hint}")
    return [g for g in groups if g in names]


def set_frozen(model: nn.Module, groups: list[str], frozen: bool = True) -> None:
    """``requires_grad = not frozen`` for every parameter of ``groups``."""
    for group, named in parameter_groups(model).items():
        if group in groups:
            for _, p in named:
                p.requires_grad_(not frozen)


def norm_layers_eval(model: nn.Module, groups: list[str]) -> None:
    """Put the BatchNorm layers of ``groups`` in eval mode (call after ``model.train()``): frozen statistics."""
    prefixes = [q for g, qs in model.group_matcher().items() if g in groups for q in qs]
    for name, m in model.named_modules():
        if isinstance(m, _BatchNorm) and any(name == q or name.startswith(q + ".") for q in prefixes):
            m.eval()


@dataclass
class FreezePlan:
    """Which groups are frozen when: ``frozen`` always, and every group but the head for ``head_epochs`` epochs.

    With ``freeze_bn`` the BatchNorm layers of every group but the head keep their pretrained statistics (eval
    mode) even while their weights train: in the few-shot benchmark this lifted fine-tuned Lite0 from 57 % to 72 %
    at 10 images per class, as batch statistics of a few images differ from the slowly updated running ones.
    """

    groups: list[str]
    frozen: list[str] = field(default_factory=list)
    head_epochs: int = 0
    freeze_bn: bool = False

    @classmethod
    def from_config(cls, model: nn.Module, cfg: Config, distributed: bool = False) -> FreezePlan:
        if cfg.train.head_epochs < 0:
            raise CnnkitError(f"expected train.head_epochs >= 0, found {cfg.train.head_epochs}")
        if cfg.train.head_epochs and distributed:
            raise CnnkitError(
                "expected train.head_epochs=0 under torchrun (DDP needs a fixed set of trained parameters),"
                f" found {cfg.train.head_epochs}; use model.freeze=all-but-head for a head-only run instead"
            )
        groups, frozen = list(model.group_matcher()), resolve_freeze(model, cfg.model.freeze)
        if len(frozen) == len(groups):
            raise CnnkitError(
                f"expected model.freeze to leave a group to train, found all of {groups}; use all-but-head"
            )
        return cls(groups, frozen, cfg.train.head_epochs, cfg.model.freeze_bn)

    def frozen_at(self, epoch: int | None) -> list[str]:
        """Groups frozen during ``epoch`` (0-based); ``None``: after the head-only epochs."""
        head_phase = epoch is not None and epoch < self.head_epochs
        return [g for g in self.groups if g in self.frozen or (head_phase and g != "head")]

    def apply(self, model: nn.Module, epoch: int | None = None) -> None:
        """Freeze the groups of ``epoch``, unfreeze the rest, and keep frozen BatchNorm in eval mode."""
        frozen = self.frozen_at(epoch)
        set_frozen(model, [g for g in self.groups if g not in frozen], frozen=False)
        set_frozen(model, frozen)
        if model.training:
            norm_layers_eval(model, [g for g in self.groups if g != "head"] if self.freeze_bn else frozen)

    def card(self) -> dict[str, Any]:
        """What ``model.json`` records: the groups frozen for the whole run, and the head-only epochs."""
        return {"frozen_groups": list(self.frozen), "head_epochs": self.head_epochs, "freeze_bn": self.freeze_bn}


# ---- discriminative learning rates ------------------------------------------------------------------------------
def discriminative_groups(model: nn.Module, cfg: OptimConfig) -> list[dict[str, Any]]:
    """Optimizer parameter groups: the head at ``cfg.lr``, every other group at ``cfg.lr × backbone_lr_mult``.

    Each model group is split into weights (ndim > 1, with weight decay) and biases/norm parameters (without),
    as :func:`cnnkit.engine.optim.decay_groups` does; the head comes first, so ``param_groups[0]`` is its rate.
    Parameters with ``requires_grad`` off (frozen for the whole run) are left out.
    """
    if cfg.backbone_lr_mult < 0:
        raise CnnkitError(f"expected optim.backbone_lr_mult >= 0, found {cfg.backbone_lr_mult}")
    named = parameter_groups(model)
    out = []
    for group in sorted(named, key=lambda g: g != "head"):
        params = [p for _, p in named[group] if p.requires_grad]
        lr = cfg.lr if group == "head" else cfg.lr * cfg.backbone_lr_mult
        for decay, ps in (
            (cfg.weight_decay, [p for p in params if p.ndim > 1]),
            (0.0, [p for p in params if p.ndim <= 1]),
        ):
            if ps:
                out.append({"params": ps, "lr": lr, "weight_decay": decay, "group": group})
    return out


def optimizer_groups(model: nn.Module, cfg: Config) -> list[dict[str, Any]] | None:
    """Per-group learning rates for a pretrained run; ``None`` (the optimizer's default groups) from scratch."""
    return discriminative_groups(model, cfg.optim) if is_pretrained(cfg) else None


def model_card_fields(model: nn.Module, plan: FreezePlan) -> dict[str, Any]:
    """``model.json`` additions: frozen groups, head-only epochs and where the starting weights came from."""
    entry = getattr(model, "pretrained_cfg", None)
    return {**plan.card(), **({"pretrained": entry.card()} if entry is not None else {})}


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
    model.to(dev, memory_format=torch.channels_last)  # fp32: bf16 autocast is ~10× slower for Lite0 on these CPUs
    out: dict[str, np.ndarray] = {}
    for split in ("train", "val", "test"):
        out[f"{split}_features"], out[f"{split}_labels"] = extract_features(model, getattr(data, split), normalize)
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


# ---- `cnnkit features` ------------------------------------------------------------------------------------------
def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("features", help="pooled features of a pretrained model (+ a linear SVM / logistic probe)")
    p.add_argument("--model", required=True, help="registered model name, e.g. efficientnet_lite0")
    p.add_argument("--pretrained", action="store_true", help="the model's published ImageNet weights")
    p.add_argument("--weights", metavar="PATH", help="a local state dict (.safetensors/.pt/.pth) instead")
    p.add_argument("--data", required=True, help="fashion-mnist, digits, or a folder of class sub-folders")
    p.add_argument("--data-dir", help="where named datasets are looked for")
    p.add_argument("--image-size", type=int, help="resize images to N×N (default: the model's input size)")
    p.add_argument("--out", required=True, metavar="FILE.npz", help="where to write the features")
    p.add_argument("--classifier", choices=CLASSIFIERS, help="also train this linear classifier and report metrics")
    p.add_argument("--C", type=float, default=1.0, dest="c", help="inverse regularisation strength (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="FILE", help="write the classifier's metrics to FILE")
    p.set_defaults(func=run_features)


def run_features(args: argparse.Namespace) -> int:
    if not (args.pretrained or args.weights):
        raise CnnkitError("expected --pretrained or --weights PATH, found neither; random features are meaningless")
    side = args.image_size or model_info(args.model).default_input[1]
    data = load_data(DataConfig(name=args.data, data_dir=args.data_dir), seed=args.seed, image_size=(side, side))
    model = create_model(args.model, pretrained=args.pretrained, weights=args.weights, in_chans=data.in_chans)
    features = features_for(model, data)
    save_features(args.out, features, data.classes, args.model)
    n = sum(len(features[f"{s}_labels"]) for s in ("train", "val", "test"))
    print(f"{features['train_features'].shape[1]}-d features of {n} images ({side}×{side}) written to {args.out}")
    if args.classifier:
        metrics = linear_probe(features, data.classes, args.classifier, args.c, args.seed)
        print(format_probe(metrics, f"{args.classifier} on {args.model} features"))
        if args.json:
            write_json(args.json, json_safe(json.loads(json.dumps(metrics, default=float))))
    return 0


def format_probe(metrics: dict[str, Any], name: str) -> str:
    """The summary table (one row per split), then the per-class table of the test split (else val)."""
    rows = [summary_row(f"{name} ({split})", m) for split, m in metrics.items()]
    last = metrics.get("test") or metrics.get("val")
    return "\n".join([text_table((SUMMARY_HEADERS, rows)), "per class:", text_table(per_class_table(last))])
