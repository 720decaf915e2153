"""Classification, the first task: one label per image, cross-entropy, accuracy and macro-F1.

What is specific to it: class-folder and named datasets (``cnnkit.data.load_data``), the model's own linear
head, cross-entropy with label smoothing, class weights, auxiliary losses and MixUp/CutMix, validation
accuracy / macro-F1 / loss, softmax probabilities as predictions, and the evaluation, prediction and report
code of ``cnnkit.evaluate`` and ``cnnkit.predict``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
import torchvision.transforms.v2 as v2
from torch import Tensor, nn

from ..config import Config
from ..data import DataSplits, load_data, native_size
from ..data.augment import BatchAugment, preset
from ..data.content import describe_content
from ..data.folder import index_folder
from ..errors import CnnkitError
from ..evaluate.metrics import classification_metrics, collect_logits, macro_f1
from ..models import create_model, model_info
from ..predict import Predictor
from ..runcard import RunCard
from ..runtime import Normalize
from .objective import Objective, class_weights


def need_two_classes(classes: list[str], source: str) -> None:
    """Refuse fewer than two classes; a lone class folder that holds folders itself is named as the likely root (a
    dataset unzipped into a folder of its own)."""
    if len(classes) >= 2:
        return
    hint = "add a folder per class"
    inner = Path(source) / classes[0] if classes else None
    if inner is not None and inner.is_dir() and any(d.is_dir() for d in inner.iterdir()):
        hint = f"if {classes[0]!r} holds the class (or train/test) folders, pass --data {inner}"
    raise CnnkitError(
        f"expected at least 2 classes to tell apart, found {len(classes)} ({', '.join(classes)}) in {source!r}; {hint}"
    )


def input_size(cfg: Config) -> tuple[int, int] | None:
    """(H, W) the images are resized to: ``data.image_size``, else the model's own size for image folders and
    fixed-size models, else ``None`` (the native size of a named dataset or an IDX folder)."""
    if cfg.data.image_size:
        return (cfg.data.image_size, cfg.data.image_size)
    info = model_info(cfg.model.name)
    with torch.device("meta"):
        fixed = getattr(info.builder(), "fixed_input", False)
    return info.default_input[1:] if fixed or not native_size(cfg.data.name) else None


def model_kwargs(cfg: Config) -> dict[str, Any]:
    """Build options recorded in the run card: auxiliary classifiers on for models that have them."""
    params = inspect.signature(model_info(cfg.model.name).builder).parameters
    return {"aux_logits": True} if "aux_logits" in params and cfg.model.aux_weight > 0 else {}


class Classify:
    """The classification task (see the module docstring); one instance per run."""

    name = "classify"
    default_model = "smallcnn"
    monitors: ClassVar[dict[str, int]] = {"val_accuracy": 1, "val_macro_f1": 1, "val_loss": -1}
    default_monitor = "val_accuracy"
    # extra report sections from higher layers (the commands hand in cnnkit.explain.units_report.units_section):
    # (run_dir, **report options) -> blocks; set by cnnkit.tasks.get_task, dropped by train.report_units: false
    report_sections: tuple[Callable[..., list[tuple[str, Any]]], ...] = ()
    epoch_line: ClassVar[dict[str, str]] = {"train_loss": "loss", "train_accuracy": "train acc",
                                            "val_accuracy": "val acc", "val_loss": "val loss"}  # fmt: skip

    # ---- training ---------------------------------------------------------------------------------------------
    def load_data(self, cfg: Config) -> DataSplits:
        if not native_size(cfg.data.name):  # an image folder: its classes are checked before any image is decoded
            need_two_classes(index_folder(cfg.data.name).classes, cfg.data.name)
        data = load_data(cfg.data, seed=cfg.train.seed, image_size=input_size(cfg))
        need_two_classes(data.classes, data.source)
        return data

    def build_model(self, cfg: Config, data: DataSplits) -> nn.Module:
        return create_model(cfg.model.name, num_classes=len(data.classes), in_chans=data.in_chans,
                            pretrained=cfg.model.pretrained, weights=cfg.model.weights,
                            **model_kwargs(cfg))  # fmt: skip

    def setup(self, cfg: Config, data: DataSplits, model: nn.Module) -> None:
        weights = class_weights(data.train_labels(), len(data.classes), cfg.train.class_weights)
        self.objective = Objective(label_smoothing=cfg.train.label_smoothing, weight=weights,
                                   aux_weight=cfg.model.aux_weight)  # fmt: skip
        self.augment = BatchAugment(preset(cfg.data.augment, data.image_size, cfg.data.name, data.hflip))
        self.mix = build_mix(len(data.classes), cfg.data.mixup, cfg.data.cutmix)
        if not cfg.train.report_units:
            self.report_sections = ()

    def prepare(self, x: Tensor, y: Tensor, normalize: Normalize) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """uint8 x Tensor[B, C, H, W], labels y Tensor[B] -> (normalised x, (target, labels)); the target is the
        labels, or soft labels Tensor[B, K] after MixUp/CutMix."""
        x, y = normalize(self.augment(x)), y.to(normalize.device)
        target = y
        if self.mix is not None:
            x, target = self.mix(x, y)
        return x, (target, y)

    def loss(self, output: Any, targets: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, float]]:
        target, labels = targets
        loss, logits = self.objective(output, target)
        return loss, {"accuracy": float((logits.argmax(1) == labels).sum())}

    def validate(self, model: nn.Module, dataset: Any, normalize: Normalize, dtype: Any) -> dict[str, float]:
        """Loss, top-1 accuracy and macro-F1 (the mean F1 over the classes present in the split, as the report)."""
        logits, labels = collect_logits(model, dataset, normalize, dtype=dtype)
        if len(labels) == 0:
            return {"val_loss": math.nan, "val_accuracy": math.nan, "val_macro_f1": math.nan}
        m = classification_metrics(logits, labels)
        f1 = macro_f1(logits.argmax(1), labels, logits.shape[1])
        return {"val_loss": m["loss"], "val_accuracy": m["top1_accuracy"], "val_macro_f1": f1}

    def card_fields(self, cfg: Config, data: DataSplits) -> dict[str, Any]:
        """Also the grey training images' look (:func:`~cnnkit.data.content.describe_content`), as a
        preprocessing key: prediction brings a user's scan or photo to it."""
        content = describe_content(data.train) if data.in_chans == 1 else None
        return {"model_kwargs": model_kwargs(cfg), "task_fields": {"hflip": data.hflip},
                **({"preprocessing": {"content": content}} if content else {})}  # fmt: skip

    def report(self, run_dir: Path, **opts: Any) -> Path:
        """The report of :mod:`cnnkit.evaluate.report`, with the blocks of ``report_sections`` before its
        configuration (each called as ``section(run_dir, **opts)``)."""
        from ..evaluate.report import write_report

        extra = [block for section in self.report_sections for block in section(run_dir, **opts)]
        return write_report(run_dir, **opts, extra=extra)

    # ---- after training ---------------------------------------------------------------------------------------
    def build_from_card(self, card: RunCard, name: str) -> nn.Module:
        return create_model(name, num_classes=card.num_classes, in_chans=card.input.channels, **card.model_kwargs)

    def predictor(self, run_dir: Path, device: str = "cpu") -> Predictor:
        return Predictor.from_run(run_dir, device)

    def evaluate(self, runs: list[str], opts: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
        from ..evaluate.command import evaluate_command

        return evaluate_command(runs, **opts)


def build_mix(num_classes: int, mixup: float, cutmix: float) -> v2.Transform | None:
    """MixUp and/or CutMix on a normalised batch, applied with probability ``mixup + cutmix``; None when off."""
    choices = [t for t, p in ((v2.MixUp(num_classes=num_classes), mixup), (v2.CutMix(num_classes=num_classes),
                                                                             cutmix)) if p > 0]  # fmt: skip
    if not choices:
        return None
    return v2.RandomApply([v2.RandomChoice(choices)], p=min(1.0, mixup + cutmix))
