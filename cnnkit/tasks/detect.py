"""Object detection, the notes' third application: every object of the image, each with its class and box.

Detectors are named ``<kind>_<backbone>`` (:mod:`cnnkit.detection.build`): ``yolo_<backbone>`` is the notes' YOLO
(v2 style: S×S grid, anchors from k-means on the training boxes, objectness, class and box offsets per anchor,
confidence threshold and NMS); ``fasterrcnn_``, ``retinanet_``, ``ssdlite_`` and ``fcos_<backbone>`` are
torchvision's detectors on a zoo backbone (:mod:`cnnkit.detection.tv_detectors`), which return their own losses in
training mode (:meth:`Detect.forward` passes them the targets).
Data: any label format, any number of objects per image (none is a
negative), boxes ``xyxy`` in pixels. Validation reports COCO mAP@0.5 (the monitor), mAP@[.5:.95] and the loss,
through torchmetrics with the pycocotools backend.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..config import Config
from ..data import DataSplits
from ..detection.anchors import kmeans_anchors
from ..detection.build import build_detector, parse_name
from ..detection.data import DetectAugment, load_detection_data
from ..detection.metrics import mean_average_precision
from ..errors import CnnkitError
from ..models.pretrained import weights_table
from ..runcard import RunCard
from ..runtime import Normalize, autocast, batches

NUM_ANCHORS = 5  # YOLOv2's choice
EVAL_CONF = 0.001  # score threshold for mAP (COCO practice: keep nearly everything, the curve decides)


class Detect:
    """The detection task (see the module docstring); one instance per run."""

    name = "detect"
    default_model = "yolo_efficientnet_lite0"  # with its ImageNet weights (configs/tasks/detect.yaml)
    monitors: ClassVar[dict[str, int]] = {"val_map50": 1, "val_map": 1, "val_loss": -1}
    default_monitor = "val_map50"
    epoch_line: ClassVar[dict[str, str]] = {"train_loss": "loss", "train_box": "box loss", "val_map50": "val mAP@.5",
                                            "val_map": "val mAP", "val_loss": "val loss"}  # fmt: skip

    def __init__(self) -> None:
        self.anchor_fields: dict[str, Any] = {}

    # ---- training ---------------------------------------------------------------------------------------------
    def load_data(self, cfg: Config) -> DataSplits:
        return load_detection_data(cfg.data, seed=cfg.train.seed)

    def build_model(self, cfg: Config, data: DataSplits) -> nn.Module:
        kind, _ = parse_name(cfg.model.name)
        anchors = None
        if kind != "fcos":  # YOLO's anchors; the anchor sides of Faster R-CNN, RetinaNet (SSDlite: unused)
            boxes = data.train.all_boxes()
            anchors, mean_iou = kmeans_anchors(boxes[:, 2:] - boxes[:, :2], NUM_ANCHORS, seed=cfg.train.seed)
            self.anchor_fields = {"anchors": [[round(v, 2) for v in a] for a in anchors.tolist()],
                                  "anchor_mean_iou": round(mean_iou, 4)}  # fmt: skip
            shown = ", ".join(f"{w:.1f}×{h:.1f}" for w, h in anchors.tolist())
            print(f"anchors (k-means, 1 − IoU, on {len(boxes)} training boxes; w×h px): {shown};"
                  f" mean best IoU {mean_iou:.3f}")  # fmt: skip
        if cfg.model.pretrained and cfg.model.weights is None and parse_name(cfg.model.name)[1] not in weights_table():
            raise CnnkitError(
                f"expected a backbone with published ImageNet weights for model.pretrained=true (the detect default),"
                f" found {cfg.model.name!r}; add --set model.pretrained=false to train it from scratch"
            )
        return build_detector(cfg.model.name, len(data.classes), data.image_size, anchors=anchors,
                              pretrained=cfg.model.pretrained, weights=cfg.model.weights)  # fmt: skip

    def setup(self, cfg: Config, data: DataSplits, model: nn.Module) -> None:
        if cfg.data.mixup or cfg.data.cutmix:
            raise CnnkitError("expected data.mixup=0 and data.cutmix=0 for detect (they mix boxes), found them set")
        self.model, self.box_weight = model, cfg.task.box_weight
        self.augment = DetectAugment(data.image_size, data.hflip) if cfg.data.augment != "none" else None

    def prepare(self, x: Tensor, targets: list[dict[str, Tensor]], normalize: Normalize) -> tuple[Tensor, list]:
        if self.augment is not None:
            x, targets = self.augment(x, targets)
        dev = normalize.device
        return normalize(x), [{k: v.to(dev) for k, v in t.items()} for t in targets]

    def forward(self, net: nn.Module, x: Tensor, targets: list[dict[str, Tensor]]) -> Any:
        """YOLO's training forward is its plain forward; torchvision's detectors take the targets."""
        return net(x) if self.model.kind == "yolo" else net(x, targets)

    def loss(self, output: Any, targets: list[dict[str, Tensor]]) -> tuple[Tensor, dict[str, float]]:
        loss, parts = self.model.loss_of(output, targets, self.box_weight)
        n = len(targets)
        return loss, {k: float(v) * n for k, v in parts.items()}

    def validate(self, model: nn.Module, dataset: Any, normalize: Normalize, dtype: Any) -> dict[str, float]:
        if not len(dataset):
            return {k: math.nan for k in self.monitors}
        preds, loss = predict_detections(model, dataset, normalize, dtype, with_loss=True)
        m = mean_average_precision(preds, dataset.targets, model.num_classes)
        return {"val_loss": loss, "val_map50": m["map_50"], "val_map": m["map"]}

    def card_fields(self, cfg: Config, data: DataSplits) -> dict[str, Any]:
        kind, backbone = parse_name(cfg.model.name)
        fields = {"detector": kind, "backbone": backbone, "box": "xyxy pixels", "hflip": data.hflip,
                  **self.anchor_fields}  # fmt: skip
        fields |= {"stride": self.model.stride, "backbone_cut_after": self.model.tap}
        if kind == "yolo":
            fields |= {"grid": list(self.model.grid)}
        return {"task_fields": fields}

    def report(self, run_dir: Path, **opts: Any) -> Path:
        from .detect_eval import write_report

        return write_report(run_dir, **opts)

    # ---- after training ---------------------------------------------------------------------------------------
    def build_from_card(self, card: RunCard, name: str) -> nn.Module:
        anchors = card.task_fields.get("anchors")
        return build_detector(name, card.num_classes, (card.input.height, card.input.width),
                              anchors=torch.tensor(anchors) if anchors else None)  # fmt: skip

    def predictor(self, run_dir: Path, device: str = "cpu") -> Any:
        from .detect_eval import DetectPredictor

        return DetectPredictor.from_run(run_dir, device)

    def evaluate(self, runs: list[str], opts: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
        from .detect_eval import evaluate_command

        return evaluate_command(runs, **opts)


@torch.no_grad()
def predict_detections(model: nn.Module, dataset: Any, normalize: Normalize, dtype: Any = None,
                       with_loss: bool = False, conf: float = EVAL_CONF, batch_size: int = 64) -> Any:  # fmt: skip
    """Detections of ``model`` on every image of a :class:`~cnnkit.detection.data.DetectionImages` (eval mode).

    Returns:
        per image ``{"boxes": [D, 4] xyxy pixels, "scores": [D], "labels": [D]}``; with ``with_loss`` a pair
        (those, the mean loss per image).
    """
    was = model.training
    model.eval()
    preds, loss_sum = [], 0.0
    try:
        for x, targets in batches(dataset, batch_size):
            dev = normalize.device
            with autocast(dev, dtype):
                moved = [{k: v.to(dev) for k, v in t.items()} for t in targets] if with_loss else None
                out, loss = model.evaluate_batch(normalize(x), moved, conf)
            loss_sum += float(loss) * len(x) if with_loss else 0.0
            preds += [{k: v.float().cpu() if k != "labels" else v.cpu() for k, v in p.items()} for p in out]
    finally:
        model.train(was)
    return (preds, loss_sum / max(len(dataset), 1)) if with_loss else preds
