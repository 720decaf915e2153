"""Anchor boxes from the training boxes, as YOLOv2 chooses them: k-means on the boxes' widths and heights with
1 − IoU as the distance (boxes compared as if they shared a centre), so a large box's size counts no more than a
small one's. The mean best IoU tells how well ``k`` anchors cover the boxes (YOLOv2: 5 anchors, 61.0)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_iou

from ..errors import CnnkitError


def centred(wh: Tensor) -> Tensor:
    """Widths and heights Tensor[N, 2] -> boxes Tensor[N, 4] ``xyxy`` sharing the centre (0, 0)."""
    return torch.cat([-wh / 2, wh / 2], dim=1)


def wh_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of sizes a: Tensor[N, 2] and b: Tensor[M, 2] as centred boxes -> Tensor[N, M]."""
    return box_iou(centred(a.float()), centred(b.float()))


def kmeans_anchors(wh: Tensor, k: int = 5, seed: int = 0, iters: int = 100) -> tuple[Tensor, float]:
    """k-means with distance 1 − IoU on box sizes.

    Args:
        wh: widths and heights of the training boxes, Tensor[N, 2] (pixels).
        k: anchors wanted; fewer when there are fewer distinct sizes.
        seed: for the k-means++ start.

    Returns:
        (anchors Tensor[k, 2] sorted by area, mean over the boxes of their best IoU with an anchor).
    """
    wh = wh.float()
    if len(wh) == 0:
        raise CnnkitError("expected training boxes to choose anchors from, found none; label some objects")
    k = min(k, len(torch.unique(wh, dim=0)))
    g = torch.Generator().manual_seed(seed)
    centres = wh[torch.randint(len(wh), (1,), generator=g)]
    while len(centres) < k:  # k-means++: the next centre far (in 1 − IoU) from those chosen
        d = (1 - wh_iou(wh, centres).max(1).values).clamp(min=0) ** 2
        centres = torch.cat([centres, wh[torch.multinomial(d + 1e-12, 1, generator=g)]])
    for _ in range(iters):
        assign = wh_iou(wh, centres).argmax(1)
        new = torch.stack([wh[assign == j].median(0).values if (assign == j).any() else centres[j] for j in range(k)])
        if torch.allclose(new, centres):
            break
        centres = new
    centres = centres[(centres[:, 0] * centres[:, 1]).argsort()]
    return centres, float(wh_iou(wh, centres).max(1).values.mean())
