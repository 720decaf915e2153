"""Instance segmentation metrics as COCO defines them, for masks and boxes at once: ``torchmetrics``'
``MeanAveragePrecision(iou_type=("bbox", "segm"))`` with the pycocotools backend. Predicted masks are
probabilities, binarised at :data:`MASK_THRESHOLD` (Mask R-CNN's 0.5). Predictions can be written as COCO results
JSON with RLE masks, so pycocotools' ``COCOeval(..., "segm")`` scores them again.

Class index k is COCO category id k + 1; image i of a split is image id i + 1 (as :mod:`cnnkit.detection.metrics`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from torch import Tensor

from ..detection.metrics import IOU_THRESHOLDS, RECALL_THRESHOLDS

MASK_THRESHOLD = 0.5
Instances = dict[str, Tensor]  # boxes [n, 4] xyxy pixels, labels [n], masks [n, H, W] (0/1 or probabilities)


def binary(masks: Tensor) -> Tensor:
    """Masks Tensor[n, H, W] (0/1 integers or probabilities) -> bool Tensor[n, H, W]."""
    return masks > MASK_THRESHOLD if masks.is_floating_point() else masks.bool()


def _cpu(d: Instances) -> Instances:
    out = {"boxes": d["boxes"].detach().float().cpu(), "labels": d["labels"].detach().long().cpu(),
           "masks": binary(d["masks"].detach().cpu())}  # fmt: skip
    return out | ({"scores": d["scores"].detach().float().cpu()} if "scores" in d else {})


def segmentation_map(preds: list[Instances], targets: list[Instances], num_classes: int) -> dict[str, Any]:
    """COCO mask and box metrics of predictions against targets (one dict per image, same order).

    Returns:
        ``segm_map``, ``segm_map_50``, ``segm_map_75``, ``bbox_map``, ``bbox_map_50``, ``bbox_map_75`` and
        ``per_class``: class index -> ``{"segm": AP@[.5:.95], "segm_50": AP@0.5, "bbox": AP@[.5:.95]}`` (NaN for a
        class with no true object).
    """
    from torchmetrics.detection import MeanAveragePrecision

    keys = [f"{t}_map{s}" for t in ("segm", "bbox") for s in ("", "_50", "_75")]
    if not targets:
        return dict.fromkeys(keys, math.nan) | {"per_class": {}}
    metric = MeanAveragePrecision(iou_type=("bbox", "segm"), class_metrics=True, backend="pycocotools",
                                  extended_summary=True, iou_thresholds=IOU_THRESHOLDS,
                                  rec_thresholds=RECALL_THRESHOLDS)  # fmt: skip
    metric.update([_cpu(p) for p in preds], [_cpu(t) for t in targets])
    out = metric.compute()
    per_class = {k: {"segm": math.nan, "segm_50": math.nan, "bbox": math.nan} for k in range(num_classes)}
    classes = out["classes"].reshape(-1).tolist()
    precision = out["segm_precision"].numpy()  # [T, R, K', A, M]
    for j, k in enumerate(classes):
        p50 = precision[0, :, j, 0, -1]
        per_class[k] = {"segm": _nan(out["segm_map_per_class"].reshape(-1)[j]),
                        "segm_50": float(p50[p50 > -1].mean()) if (p50 > -1).any() else math.nan,
                        "bbox": _nan(out["bbox_map_per_class"].reshape(-1)[j])}  # fmt: skip
    return {k: _nan(out[k]) for k in keys} | {"per_class": per_class}


def _nan(v: Tensor) -> float:
    f = float(v)
    return f if f >= 0 else math.nan


def _rle(mask: Tensor) -> dict[str, Any]:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.numpy().astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def coco_segm_results(preds: list[Instances]) -> list[dict[str, Any]]:
    """Predictions -> COCO results entries: ``image_id``, ``category_id``, ``segmentation`` (RLE of the binarised
    mask), ``bbox`` [x, y, w, h], ``score``."""
    out = []
    for i, p in enumerate(preds):
        c = _cpu(p)
        for box, label, score, mask in zip(c["boxes"].tolist(), c["labels"].tolist(), c["scores"].tolist(), c["masks"]):
            out.append({"image_id": i + 1, "category_id": int(label) + 1, "segmentation": _rle(mask),
                        "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "score": float(score)})  # fmt: skip
    return out


def coco_segm_ground_truth(targets: list[Instances], classes: list[str], size: tuple[int, int],
                           names: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
    """True objects -> a COCO annotations document with RLE masks for ``size`` (H, W) images."""
    h, w = size
    images = [{"id": i + 1, "width": w, "height": h, "file_name": names[i] if names else f"{i + 1}.png"}
              for i in range(len(targets))]  # fmt: skip
    anns: list[dict[str, Any]] = []
    for i, t in enumerate(targets):
        c = _cpu(t)
        for box, label, mask in zip(c["boxes"].tolist(), c["labels"].tolist(), c["masks"]):
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(label) + 1, "iscrowd": 0,
                         "segmentation": _rle(mask), "area": float(mask.sum()),
                         "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})  # fmt: skip
    return {
        "images": images,
        "annotations": anns,
        "categories": [{"id": k + 1, "name": n} for k, n in enumerate(classes)],
    }
