"""Instance segmentation, the notes' last application: every object of the image, each with its class, box and
pixel mask.

The model is torchvision's Mask R-CNN on a zoo backbone, named ``maskrcnn_<backbone>``
(:mod:`cnnkit.segmentation.model`); it returns its own losses in training mode, so the task's ``forward`` hook
passes the targets and ``loss`` sums the loss dict. Data: COCO JSON with polygon or RLE masks (the scene generator
writes them), any number of objects per image (:mod:`cnnkit.segmentation.data`). Validation reports COCO mask
mAP@0.5 (the monitor), mask mAP@[.5:.95], box mAP@0.5 and the loss, through torchmetrics with the pycocotools
backend.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..config import Config
from ..data import DataSplits
from ..errors import CnnkitError
from ..runcard import RunCard
from ..runtime import Normalize, batches
from ..segmentation.data import SegmentAugment, load_segmentation_data
from ..segmentation.metrics import segmentation_map
from ..segmentation.model import build_segmenter, parse_name

EVAL_CONF = 0.001  # score threshold for mAP (COCO practice: keep nearly everything, the curve decides)
LEGACY_MASK_HEAD, LEGACY_ROI_SAMPLING = (128,) * 4, 2  # the heads of runs whose card does not name them
LOSS_PARTS = {"loss_classifier": "cls", "loss_box_reg": "box", "loss_mask": "mask", "loss_objectness": "obj",
              "loss_rpn_box_reg": "rpn_box"}  # fmt: skip


class Segment:
    """The instance segmentation task (see the module docstring); one instance per run."""

    name = "segment"
    default_model = "maskrcnn_smallcnn"
    monitors: ClassVar[dict[str, int]] = {"val_mask_map50": 1, "val_mask_map": 1, "val_box_map50": 1, "val_loss": -1}
    default_monitor = "val_mask_map50"
    epoch_line: ClassVar[dict[str, str]] = {"train_loss": "loss", "train_mask": "mask loss",
                                            "val_mask_map50": "val mask mAP@.5", "val_box_map50": "val box mAP@.5",
                                            "val_loss": "val loss"}  # fmt: skip

    # ---- training ---------------------------------------------------------------------------------------------
    def load_data(self, cfg: Config) -> DataSplits:
        return load_segmentation_data(cfg.data, seed=cfg.train.seed)

    def build_model(self, cfg: Config, data: DataSplits) -> nn.Module:
        return build_segmenter(cfg.model.name, len(data.classes), data.image_size, pretrained=cfg.model.pretrained,
                               weights=cfg.model.weights)  # fmt: skip

    def setup(self, cfg: Config, data: DataSplits, model: nn.Module) -> None:
        if cfg.data.mixup or cfg.data.cutmix:
            raise CnnkitError("expected data.mixup=0 and data.cutmix=0 for segment (they mix masks), found them set")
        self.model = model
        self.augment = SegmentAugment(data.hflip) if cfg.data.augment != "none" else None

    def prepare(self, x: Tensor, targets: list[dict[str, Tensor]], normalize: Normalize) -> tuple[Tensor, list]:
        if self.augment is not None:
            x, targets = self.augment(x, targets)
        dev = normalize.device
        return normalize(x), [{k: v.to(dev) for k, v in t.items()} for t in targets]

    def forward(self, net: nn.Module, x: Tensor, targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """Mask R-CNN in training mode takes the targets and returns its loss dict."""
        return net(x, targets)

    def loss(self, output: dict[str, Tensor], targets: list[dict[str, Tensor]]) -> tuple[Tensor, dict[str, float]]:
        """The sum of Mask R-CNN's five losses; the parts, times the batch size, as statistics."""
        n = len(targets)
        return sum(output.values()), {LOSS_PARTS.get(k, k): float(v.detach()) * n for k, v in output.items()}

    def validate(self, model: nn.Module, dataset: Any, normalize: Normalize, dtype: Any) -> dict[str, float]:
        if not len(dataset):
            return {k: math.nan for k in self.monitors}
        preds, loss = predict_instances(model, dataset, normalize, with_loss=True)
        m = segmentation_map(preds, dataset.targets, model.num_classes)
        return {"val_loss": loss, "val_mask_map50": m["segm_map_50"], "val_mask_map": m["segm_map"],
                "val_box_map50": m["bbox_map_50"]}  # fmt: skip

    def card_fields(self, cfg: Config, data: DataSplits) -> dict[str, Any]:
        net = self.model.net
        fields = {"segmenter": "maskrcnn", "backbone": parse_name(cfg.model.name), "box": "xyxy pixels",
                  "mask": "binary at 0.5, image size", "hflip": data.hflip, "min_size": net.transform.min_size[0],
                  "feature_stride": net.backbone.stride, "mask_head": list(self.model.mask_head),
                  "roi_sampling": self.model.roi_sampling}  # fmt: skip
        return {"task_fields": fields}

    def report(self, run_dir: Path, **opts: Any) -> Path:
        from .segment_eval import write_report

        return write_report(run_dir, **opts)

    # ---- after training ---------------------------------------------------------------------------------------
    def build_from_card(self, card: RunCard, name: str) -> nn.Module:
        fields = card.task_fields  # runs saved before these were recorded: the heads they were built with
        heads = {"mask_head": tuple(fields.get("mask_head", LEGACY_MASK_HEAD)),
                 "roi_sampling": fields.get("roi_sampling", LEGACY_ROI_SAMPLING)}  # fmt: skip
        return build_segmenter(name, card.num_classes, (card.input.height, card.input.width), **heads)

    def predictor(self, run_dir: Path, device: str = "cpu") -> Any:
        from .segment_eval import SegmentPredictor

        return SegmentPredictor.from_run(run_dir, device)

    def evaluate(self, runs: list[str], opts: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
        from .segment_eval import evaluate_command

        return evaluate_command(runs, **opts)


@torch.no_grad()
def predict_instances(model: nn.Module, dataset: Any, normalize: Normalize, with_loss: bool = False,
                      conf: float = EVAL_CONF, batch_size: int = 16) -> Any:  # fmt: skip
    """Objects found by ``model`` in every image of a :class:`~cnnkit.segmentation.data.SegmentationImages`.

    Returns:
        per image ``{"boxes": [D, 4] xyxy pixels, "scores": [D], "labels": [D], "masks": [D, H, W] probabilities}``;
        with ``with_loss`` a pair (those, the mean loss per image).
    """
    preds, loss_sum, dev = [], 0.0, normalize.device
    for x, targets in batches(dataset, batch_size):
        moved = [{k: v.to(dev) for k, v in t.items()} for t in targets] if with_loss else None
        out, loss = model.evaluate_batch(normalize(x), moved, conf)
        loss_sum += float(loss) * len(x) if with_loss else 0.0
        preds += [{k: v.float().cpu() if k != "labels" else v.cpu() for k, v in p.items()} for p in out]
    return (preds, loss_sum / max(len(dataset), 1)) if with_loss else preds
