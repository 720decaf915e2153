"""Detection metrics as COCO defines them, through ``torchmetrics``' ``MeanAveragePrecision`` with the pycocotools
backend (the reference everyone compares to): mAP@[.5:.95], mAP@0.5, mAP@0.75, AP per class and the
precision-recall curves. Predictions and ground truth can be written in COCO's own JSON formats (results and
annotations), so any COCO tool can score them again.

Class index k is COCO category id k + 1 (as :func:`cnnkit.data.labels.write_coco` numbers them); image i of a
split is image id i + 1.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

# pycocotools' own thresholds (``Params.setDetParams``) in double precision: torchmetrics' defaults are float32
# ``linspace`` values (0.550000011…), which move a recall of exactly 0.5 to the other side of a threshold.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10).tolist()
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101).tolist()
Boxes = dict[str, Tensor]  # {"boxes": [n, 4] xyxy pixels, "labels": [n], "scores": [n] for predictions}


def mean_average_precision(preds: list[Boxes], targets: list[Boxes], num_classes: int, curves: bool = False
                           ) -> dict[str, Any]:  # fmt: skip
    """COCO box metrics of predictions against targets (one dict per image, same order).

    Returns:
        ``map`` (mAP@[.5:.95]), ``map_50``, ``map_75``, ``per_class`` (AP@[.5:.95] per class index, NaN for a
        class with no true box), ``per_class_50``; with ``curves`` also ``precision`` ndarray[R=101, K] at IoU 0.5
        (all areas, 100 detections; -1 where undefined) and ``recall_points`` ndarray[101].
    """
    from torchmetrics.detection import MeanAveragePrecision

    if not targets:
        return {"map": math.nan, "map_50": math.nan, "map_75": math.nan, "per_class": {}, "per_class_50": {}}
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", class_metrics=True, backend="pycocotools",
                                  extended_summary=True, iou_thresholds=IOU_THRESHOLDS,
                                  rec_thresholds=RECALL_THRESHOLDS)  # fmt: skip
    metric.update([_cpu(p) for p in preds], [_cpu(t) for t in targets])
    out = metric.compute()
    per_class, per_class_50 = {k: math.nan for k in range(num_classes)}, {k: math.nan for k in range(num_classes)}
    precision = out["precision"].numpy()  # [T, R, K', A, M] over the classes present, in out["classes"] order
    classes = out["classes"].reshape(-1).tolist()
    for j, k in enumerate(classes):
        ap = float(out["map_per_class"].reshape(-1)[j]) if len(classes) > 1 else float(out["map_per_class"])
        per_class[k] = ap if ap >= 0 else math.nan
        p50 = precision[0, :, j, 0, -1]
        per_class_50[k] = float(p50[p50 > -1].mean()) if (p50 > -1).any() else math.nan
    result = {"map": _nan(out["map"]), "map_50": _nan(out["map_50"]), "map_75": _nan(out["map_75"]),
              "per_class": per_class, "per_class_50": per_class_50}  # fmt: skip
    if curves:
        full = np.full((precision.shape[1], num_classes), -1.0)
        for j, k in enumerate(classes):
            full[:, k] = precision[0, :, j, 0, -1]
        result["precision"], result["recall_points"] = full, np.linspace(0, 1, precision.shape[1])
    return result


def _cpu(d: Boxes) -> Boxes:
    return {k: v.detach().float().cpu() if k != "labels" else v.detach().long().cpu() for k, v in d.items()}


def _nan(v: Tensor) -> float:
    f = float(v)
    return f if f >= 0 else math.nan


def coco_results(preds: list[Boxes]) -> list[dict[str, Any]]:
    """Predictions -> COCO results JSON entries: ``image_id``, ``category_id``, ``bbox`` [x, y, w, h], ``score``."""
    out = []
    for i, p in enumerate(preds):
        xywh = p["boxes"].clone().float()
        xywh[:, 2:] -= xywh[:, :2]
        for box, label, score in zip(xywh.tolist(), p["labels"].tolist(), p["scores"].tolist()):
            out.append({"image_id": i + 1, "category_id": int(label) + 1,
                        "bbox": [round(v, 3) for v in box], "score": round(float(score), 6)})  # fmt: skip
    return out


def coco_ground_truth(targets: list[Boxes], classes: list[str], size: tuple[int, int], names: list[str] | None = None
                      ) -> dict[str, Any]:  # fmt: skip
    """True boxes -> a COCO annotations document (``images``, ``annotations``, ``categories``) for ``size`` (H, W)
    images, so pycocotools' ``COCO`` and ``loadRes`` read it beside :func:`coco_results`."""
    h, w = size
    images = [{"id": i + 1, "width": w, "height": h, "file_name": (names[i] if names else f"{i + 1}.png")}
              for i in range(len(targets))]  # fmt: skip
    anns = []
    for i, t in enumerate(targets):
        for box, label in zip(t["boxes"].tolist(), t["labels"].tolist()):
            bw, bh = box[2] - box[0], box[3] - box[1]
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(label) + 1, "iscrowd": 0,
                         "bbox": [box[0], box[1], bw, bh], "area": bw * bh})  # fmt: skip
    cats = [{"id": k + 1, "name": name} for k, name in enumerate(classes)]
    return {"images": images, "annotations": anns, "categories": cats}


def results_to_preds(results: list[dict[str, Any]], num_images: int) -> list[Boxes]:
    """COCO results entries -> one prediction dict per image id 1..num_images (the inverse of :func:`coco_results`)."""
    preds = [{"boxes": [], "scores": [], "labels": []} for _ in range(num_images)]
    for r in results:
        x, y, w, h = r["bbox"]
        p = preds[r["image_id"] - 1]
        p["boxes"].append([x, y, x + w, y + h])
        p["scores"].append(r["score"])
        p["labels"].append(r["category_id"] - 1)
    return [{"boxes": torch.tensor(p["boxes"], dtype=torch.float32).reshape(-1, 4),
             "scores": torch.tensor(p["scores"], dtype=torch.float32),
             "labels": torch.tensor(p["labels"], dtype=torch.long)} for p in preds]  # fmt: skip
