"""Pictures for people: boxes and labels drawn on images, and tiles in a grid (torchvision's utilities)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.utils import draw_bounding_boxes, make_grid


def draw_boxes(
    image: Tensor, boxes: Tensor, labels: Sequence[str], colors: Sequence[str], scale: int = 1, width: int = 2
) -> Tensor:
    """uint8 Tensor[3, H, W] and ``xyxy`` pixel boxes Tensor[N, 4] -> uint8 Tensor[3, H·scale, W·scale] with the
    boxes and their labels drawn (small images are enlarged first, so the labels can be read)."""
    if scale > 1:
        image = F.interpolate(image[None].float(), scale_factor=scale, mode="nearest")[0].to(torch.uint8)
        boxes = boxes * scale
    if not len(boxes):  # nothing to draw (torchvision would warn)
        return image
    h, w = image.shape[-2:]
    boxes = boxes.clone().float()
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w - 1)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h - 1)
    return draw_bounding_boxes(image, boxes, labels=list(labels), colors=list(colors), width=width)


def image_grid(tiles: Sequence[Tensor], cols: int, pad: int = 4) -> Tensor:
    """uint8 tiles Tensor[3, H, W] (one size) -> one uint8 Tensor[3, H', W'] grid, white between the tiles."""
    return make_grid(torch.stack(list(tiles)), nrow=cols, padding=pad, pad_value=255)


def caption(image: Tensor, text: str) -> Tensor:
    """uint8 Tensor[3, H, W] with ``text`` written along its top edge (a frame around the whole image)."""
    h, w = image.shape[-2:]
    return draw_bounding_boxes(image, torch.tensor([[0, 0, w - 1, h - 1]]), labels=[text], colors=["lime"], width=1)
