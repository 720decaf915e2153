"""Mask R-CNN as an ONNX graph (``cnnkit export`` of a segment run), as :mod:`cnnkit.detection.export` writes
torchvision's detectors: one image in (batch axis 1; ONNX Runtime runs a batch image by image), torchvision's own
post-processing traced by the TorchScript exporter (RPN, RoI heads, NMS, masks pasted into the image), every object
with score above ``conf`` out as one flat list.

Outputs (the ONNX names, in this order): ``boxes`` float32 [D, 4] ``xyxy`` in the model's input pixels, ``scores``
float32 [D], ``labels`` int64 [D] (cnnkit's 0…C−1), ``counts`` int64 [1] (D) and ``masks`` float32 [D, H, W]
(probabilities at the input size).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..detection.export import OUTPUTS, split_outputs
from .model import MAX_OBJECTS

SEGMENT_OUTPUTS = (*OUTPUTS, "masks")


class MaskRCNNGraph(nn.Module):
    """A cnnkit Mask R-CNN in eval mode, for one image: Tensor[1, 3, H, W] in 0-1 -> (boxes [D, 4], scores [D],
    labels [D], counts [1], masks [D, H, W]) of its objects with score above ``conf`` (at most 50)."""

    batch_of_one = True  # torchvision loops over the images in Python; tracing would fix their number

    def __init__(self, model: nn.Module, conf: float) -> None:
        super().__init__()
        self.model = model
        model.net.roi_heads.score_thresh = conf  # evaluate_batch sets it again on every call

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        (p,) = self.model(x)
        labels = p["labels"] - 1  # torchvision's class 0 is the background
        return p["boxes"], p["scores"], labels, torch.ones_like(labels).sum().reshape(1), p["masks"][:, 0]


def to_instances(outs: Sequence[Tensor]) -> list[dict[str, Tensor]]:
    """ONNX Runtime's outputs -> per image ``boxes`` [D, 4], ``scores`` [D], ``labels`` [D], ``masks`` [D, H, W]:
    what the model's ``evaluate_batch`` returns at the file's threshold."""
    return split_outputs(outs, SEGMENT_OUTPUTS, MAX_OBJECTS)
