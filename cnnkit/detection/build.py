"""Detector names and building: ``<kind>_<backbone>`` with a kind among :data:`KINDS` and any zoo backbone
(``yolo_smallcnn``, ``fasterrcnn_efficientnet_lite0``, …). Every detector answers the same two calls:
``losses(x, targets)`` and ``predict(x, conf)``, so the task and the commands need no per-kind branch."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..errors import CnnkitError
from ..models import create_model, list_models
from .tv_detectors import TorchvisionDetector
from .yolo import YOLO, detect, yolo_loss

KINDS = ("yolo", "fasterrcnn", "retinanet", "ssdlite", "fcos")


def parse_name(name: str) -> tuple[str, str]:
    """``"yolo_smallcnn"`` -> ``("yolo", "smallcnn")``.

    Raises:
        CnnkitError: for an unknown kind or backbone.
    """
    kind, _, backbone = name.partition("_")
    if kind not in KINDS or backbone not in list_models():
        raise CnnkitError(
            f"expected a detector named <kind>_<backbone> with kind among {', '.join(KINDS)} and a backbone from"
            f" `cnnkit models`, found {name!r}; e.g. --model yolo_smallcnn or --model fasterrcnn_efficientnet_lite0"
        )
    return kind, backbone


def build_detector(name: str, num_classes: int, image_size: tuple[int, int], *, anchors: Tensor | None = None,
                   pretrained: bool = False, weights: str | None = None) -> nn.Module:  # fmt: skip
    """The detector ``name`` for ``num_classes`` classes on RGB images of ``image_size`` (H, W).

    Args:
        anchors: anchor sizes Tensor[B, 2] in pixels (from :func:`~cnnkit.detection.anchors.kmeans_anchors`): YOLO's
            anchors; the anchor-based torchvision kinds take their sides (√(w·h)) from them.
        pretrained, weights: the backbone's starting weights, as ``create_model`` takes them.
    """
    kind, backbone_name = parse_name(name)
    backbone = create_model(backbone_name, num_classes=num_classes, in_chans=3, pretrained=pretrained,
                            weights=weights)  # fmt: skip
    backbone.default_input = (3, *image_size)
    if kind == "yolo":
        if anchors is None:
            raise ValueError("expected anchors for a YOLO detector, found None")
        return YoloDetector(backbone, anchors)
    return TorchvisionDetector(kind, backbone, num_classes, anchors)


class YoloDetector(YOLO):
    """:class:`~cnnkit.detection.yolo.YOLO` with the calls every cnnkit detector answers."""

    kind = "yolo"

    def loss_of(self, output: Any, targets: list[dict[str, Tensor]], box_weight: float = 1.0
                ) -> tuple[Tensor, dict[str, Tensor]]:  # fmt: skip
        """The loss of a training forward's ``output`` (the raw map)."""
        return yolo_loss(output, targets, self.anchors, self.stride, box_weight)

    @torch.no_grad()
    def evaluate_batch(self, x: Tensor, targets: list[dict[str, Tensor]] | None = None, conf: float = 0.001
                       ) -> tuple[list[dict[str, Tensor]], Tensor | None]:  # fmt: skip
        """Normalised images Tensor[N, C, H, W] (eval mode) -> (per image ``boxes`` [D, 4] xyxy pixels, ``scores``
        [D], ``labels`` [D]; the loss against ``targets`` when given, else None), from one forward pass."""
        out = self(x)
        loss = yolo_loss(out, targets, self.anchors, self.stride)[0] if targets is not None else None
        return detect(out, self.anchors, self.stride, tuple(x.shape[-2:]), conf), loss
