"""Classification + localisation, the notes' second application: the class of the one object in the image and
its box ``(P_x, P_y, w, h)`` (centre, width and height, normalised to the image).

The network is any zoo model that answers the contract (its ``forward_features``) with its own class head and
a box head beside it: the feature map pooled to a small grid, flattened, two fully connected layers and a
sigmoid, so the four numbers lie in the image. The loss is cross-entropy plus ``task.box_weight`` times a box
term (smooth-L1 on the normalised coordinates, or GIoU, or both). Validation reports class accuracy, mean IoU
and localisation accuracy (class right and IoU ≥ 0.5), with IoU from ``torchvision.ops.box_iou``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
import torchvision.transforms.v2 as v2
from torch import Tensor, nn
from torchvision import tv_tensors
from torchvision.ops import box_convert, box_iou, generalized_box_iou_loss

from ..config import Config
from ..data import DataSplits
from ..data.boxes import load_box_data, pixel_boxes
from ..errors import CnnkitError
from ..models import create_model
from ..runcard import RunCard
from ..runtime import Normalize, autocast, batches

BOX_LOSSES = ("smooth_l1", "giou", "both")
IOU_HIT = 0.5  # the notes' (and PASCAL VOC's) threshold for a correct box


class LocalizerOutput(NamedTuple):
    logits: Tensor  # [B, K]
    boxes: Tensor  # [B, 4] normalised cxcywh in (0, 1)


class Localizer(nn.Module):
    """A contract ``backbone`` (with its class head) plus a box head on its unpooled feature map.

    Args:
        backbone: a classifier from ``create_model``; its ``forward_features`` gives Tensor[B, F, h, w] (or
            Tensor[B, F] for fixed fully connected stacks).
        grid: the box head pools the map to ``grid × grid`` cells before its fully connected layers, keeping
            where things are (global pooling would throw position away).
    """

    def __init__(self, backbone: nn.Module, grid: int = 4, hidden: int = 256) -> None:
        super().__init__()
        self.backbone = backbone
        c, h, w = backbone.default_input
        with torch.no_grad():
            feats = backbone.eval().forward_features(torch.zeros(1, c, h, w, device=_device(backbone)))
        backbone.train()
        pool = [nn.AdaptiveAvgPool2d(grid), nn.Flatten()] if feats.ndim == 4 else [nn.Flatten()]
        width = feats.shape[1] * (grid * grid if feats.ndim == 4 else 1)
        self.box_head = nn.Sequential(*pool, nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 4))
        self.num_classes, self.mean, self.std = backbone.num_classes, backbone.mean, backbone.std
        self.default_input = backbone.default_input
        self.pretrained_cfg = getattr(backbone, "pretrained_cfg", None)  # where the starting weights came from

    def forward(self, x: Tensor) -> LocalizerOutput:
        """x: Tensor[B, C, H, W] -> (class logits Tensor[B, K], boxes Tensor[B, 4] normalised cxcywh)."""
        f = self.backbone.forward_features(x)
        return LocalizerOutput(self.backbone.forward_head(f), torch.sigmoid(self.box_head(f)))

    def group_matcher(self) -> dict[str, list[str]]:
        """The backbone's groups; the box head trains with the class head."""
        groups = {g: [f"backbone.{p}" for p in ps] for g, ps in self.backbone.group_matcher().items()}
        groups["head"] = [*groups.get("head", []), "box_head"]
        return groups


def _device(m: nn.Module) -> torch.device:
    p = next(m.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


class BoxAugment:
    """Box-aware augmentation of a uint8 batch: shifts and scales (``v2.RandomAffine``), mirror when the data
    allows it, colour jitter. ``tv_tensors.BoundingBoxes`` move with the pixels; an example whose box would be
    cut by more than half keeps its original pixels and box."""

    def __init__(self, size: tuple[int, int], hflip: bool) -> None:
        steps = [v2.RandomAffine(degrees=0, translate=(0.1, 0.1), scale=(0.85, 1.15))]
        steps += [v2.RandomHorizontalFlip()] if hflip else []
        self.transform = v2.Compose([*steps, v2.ColorJitter(0.2, 0.2, 0.2), v2.ClampBoundingBoxes()])
        self.size = size

    def __call__(self, x: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
        """x: uint8 Tensor[B, C, H, W], boxes Tensor[B, 4] normalised cxcywh -> the same, augmented."""
        out_x, out_b = x.clone(), boxes.clone()
        px = pixel_boxes(boxes, self.size)
        for i in range(len(x)):
            b = tv_tensors.BoundingBoxes(px[i : i + 1], format="XYXY", canvas_size=self.size)
            img, nb = self.transform(x[i], b)
            if _area(nb[0]) >= 0.5 * _area(px[i]):
                out_x[i] = img
                h, w = self.size
                xyxy = nb[0].as_subclass(Tensor) / torch.tensor([w, h, w, h])
                out_b[i] = box_convert(xyxy[None], "xyxy", "cxcywh")[0]
        return out_x, out_b


def _area(b: Tensor) -> float:
    return float((b[2] - b[0]).clamp(min=0) * (b[3] - b[1]).clamp(min=0))


def box_ious(pred: Tensor, target: Tensor) -> Tensor:
    """IoU of each predicted box with its own target, both Tensor[B, 4] normalised cxcywh -> Tensor[B]."""
    a, b = box_convert(pred.float(), "cxcywh", "xyxy"), box_convert(target.float(), "cxcywh", "xyxy")
    return box_iou(a, b).diagonal()


def localisation_figures(logits: Tensor, boxes: Tensor, labels: Tensor, targets: Tensor) -> dict[str, Tensor]:
    """Per example: ``correct`` (class right), ``iou`` and ``hit`` (class right and IoU ≥ 0.5), each Tensor[N]."""
    correct = logits.argmax(1) == labels
    iou = box_ious(boxes, targets)
    return {"correct": correct, "iou": iou, "hit": correct & (iou >= IOU_HIT)}


class Localize:
    """The localisation task (see the module docstring); one instance per run."""

    name = "localize"
    default_model = "smallcnn"
    monitors: ClassVar[dict[str, int]] = {"val_loc_accuracy": 1, "val_accuracy": 1, "val_mean_iou": 1, "val_loss": -1}
    default_monitor = "val_loc_accuracy"
    epoch_line: ClassVar[dict[str, str]] = {"train_loss": "loss", "train_accuracy": "train acc",
                                            "train_mean_iou": "train IoU", "val_accuracy": "val acc",
                                            "val_mean_iou": "val IoU", "val_loc_accuracy": "val loc acc",
                                            "val_loss": "val loss"}  # fmt: skip

    # ---- training ---------------------------------------------------------------------------------------------
    def load_data(self, cfg: Config) -> DataSplits:
        return load_box_data(cfg.data, seed=cfg.train.seed, one_object=True)

    def build_model(self, cfg: Config, data: DataSplits) -> nn.Module:
        backbone = create_model(cfg.model.name, num_classes=len(data.classes), in_chans=data.in_chans,
                                pretrained=cfg.model.pretrained, weights=cfg.model.weights)  # fmt: skip
        backbone.default_input = (data.in_chans, *data.image_size)
        return Localizer(backbone)

    def setup(self, cfg: Config, data: DataSplits, model: nn.Module) -> None:
        if cfg.task.box_loss not in BOX_LOSSES:
            raise CnnkitError(f"expected task.box_loss one of {', '.join(BOX_LOSSES)}, found {cfg.task.box_loss!r}")
        if cfg.data.mixup or cfg.data.cutmix:
            raise CnnkitError("expected data.mixup=0 and data.cutmix=0 for localize (they mix boxes), found them set")
        self.box_loss, self.box_weight = cfg.task.box_loss, cfg.task.box_weight
        self.label_smoothing = cfg.train.label_smoothing
        self.augment = BoxAugment(data.image_size, data.hflip) if cfg.data.augment != "none" else None

    def prepare(self, x: Tensor, targets: dict[str, Tensor], normalize: Normalize) -> tuple[Tensor, dict]:
        boxes = targets["boxes"]
        if self.augment is not None:
            x, boxes = self.augment(x, boxes)
        dev = normalize.device
        return normalize(x), {"labels": targets["labels"].to(dev), "boxes": boxes.to(dev)}

    def loss(self, output: LocalizerOutput, targets: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        labels, boxes = targets["labels"], targets["boxes"]
        loss = F.cross_entropy(output.logits.float(), labels, label_smoothing=self.label_smoothing)
        loss = loss + self.box_weight * self.box_term(output.boxes.float(), boxes)
        with torch.no_grad():
            fig = localisation_figures(output.logits, output.boxes, labels, boxes)
        return loss, {"accuracy": float(fig["correct"].sum()), "mean_iou": float(fig["iou"].sum())}

    def box_term(self, pred: Tensor, target: Tensor) -> Tensor:
        """smooth-L1 on the normalised (P_x, P_y, w, h), GIoU loss on the boxes, or their sum."""
        term = pred.new_zeros(())
        if self.box_loss in ("smooth_l1", "both"):
            term = term + F.smooth_l1_loss(pred, target, beta=0.05) * 4  # summed over the four coordinates
        if self.box_loss in ("giou", "both"):
            xyxy = [box_convert(b, "cxcywh", "xyxy") for b in (pred, target)]
            term = term + generalized_box_iou_loss(*xyxy, reduction="mean")
        return term

    def validate(self, model: nn.Module, dataset: Any, normalize: Normalize, dtype: Any) -> dict[str, float]:
        out = predict_dataset(model, dataset, normalize, dtype)
        if not len(dataset):
            return {k: math.nan for k in self.monitors}
        fig = localisation_figures(out.logits, out.boxes, dataset.labels, dataset.boxes)
        loss = F.cross_entropy(out.logits, dataset.labels)
        loss = loss + self.box_weight * self.box_term(out.boxes, dataset.boxes)
        return {
            "val_loss": float(loss),
            "val_accuracy": float(fig["correct"].float().mean()),
            "val_mean_iou": float(fig["iou"].mean()),
            "val_loc_accuracy": float(fig["hit"].float().mean()),
        }

    def card_fields(self, cfg: Config, data: DataSplits) -> dict[str, Any]:
        return {"task_fields": {"box": "cxcywh normalised", "iou_hit": IOU_HIT, "hflip": data.hflip}}

    def report(self, run_dir: Path, **opts: Any) -> Path:
        from .localize_eval import write_report

        return write_report(run_dir, **opts)

    # ---- after training ---------------------------------------------------------------------------------------
    def build_from_card(self, card: RunCard, name: str) -> nn.Module:
        backbone = create_model(name, num_classes=card.num_classes, in_chans=card.input.channels)
        backbone.default_input = (card.input.channels, card.input.height, card.input.width)
        return Localizer(backbone)

    def predictor(self, run_dir: Path, device: str = "cpu") -> Any:
        from .localize_eval import BoxPredictor

        return BoxPredictor.from_run(run_dir, device)

    def evaluate(self, runs: list[str], opts: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
        from .localize_eval import evaluate_command

        return evaluate_command(runs, **opts)


@torch.no_grad()
def predict_dataset(model: nn.Module, dataset: Any, normalize: Normalize, dtype: Any = None) -> LocalizerOutput:
    """Run ``model`` in eval mode over a :class:`BoxImages` -> (logits Tensor[N, K], boxes Tensor[N, 4])."""
    was = model.training
    model.eval()
    logits, boxes = [], []
    try:
        for x, _ in batches(dataset, 256):
            with autocast(normalize.device, dtype):
                out = model(normalize(x))
            logits.append(out.logits.float().cpu())
            boxes.append(out.boxes.float().cpu())
    finally:
        model.train(was)
    k = getattr(model, "num_classes", 0)
    return LocalizerOutput(torch.cat(logits) if logits else torch.zeros(0, k),
                           torch.cat(boxes) if boxes else torch.zeros(0, 4))  # fmt: skip
