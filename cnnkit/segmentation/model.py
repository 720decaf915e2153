"""Mask R-CNN (He et al. 2017; torchvision's ``MaskRCNN``) on any zoo backbone, named ``maskrcnn_<backbone>``.

The backbone's ``forward_features`` (one feature map, Tensor[N, F, h, w]) feeds torchvision's region proposal
network, box head and mask head through one RoI-Align level. torchvision's ``GeneralizedRCNNTransform`` resizes and
normalises the images itself with the backbone's mean and std, so the wrapper declares ``mean = 0`` and
``std = 1``: the engine's ``Normalize`` then only scales uint8 to 0-1, and nothing is normalised twice.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from ..errors import CnnkitError
from ..models import create_model, list_models

KIND = "maskrcnn"
BOX_HEAD = 256  # width of the two fully connected box layers (torchvision's default 1024 is for COCO's 80 classes)
# The mask branch: two 64-channel 3×3 convolutions (torchvision's default is four of 256, cnnkit's first was four of
# 128). With it, ROI_SAMPLING and BOX_ROIS below, a training step on generated 64×64 scenes (batch 8) took 0.44 s
# instead of 1.45 s on a 2-core AMD EPYC, and the benchmark's mask mAP@0.5 reached 0.91 in 5 epochs
# (benchmarks/segment.py).
MASK_HEAD = (64, 64)
ROI_SAMPLING = 1  # RoI Align's sampling points per bin side (2 in torchvision; its CPU backward runs on one thread)
BOX_ROIS = 32  # proposals sampled per image for the box and mask losses (torchvision's default 512 is for COCO)
MAX_OBJECTS = 50  # objects kept per image, best first


def parse_name(name: str) -> str:
    """``"maskrcnn_smallcnn"`` -> ``"smallcnn"``.

    Raises:
        CnnkitError: for another kind or an unknown backbone.
    """
    kind, _, backbone = name.partition("_")
    if kind != KIND or backbone not in list_models():
        raise CnnkitError(
            f"expected a segmentation model named maskrcnn_<backbone> with a backbone from `cnnkit models`, found"
            f" {name!r}; e.g. --model maskrcnn_smallcnn"
        )
    return backbone


class Features(nn.Module):
    """A contract model's ``forward_features`` as a detection backbone: Tensor[N, 3, H, W] -> Tensor[N, F, h, w],
    with ``out_channels`` = F (what torchvision's detectors read)."""

    def __init__(self, body: nn.Module, image_size: tuple[int, int]) -> None:
        super().__init__()
        self.body = body
        with torch.no_grad():
            feats = body.eval().forward_features(torch.zeros(1, 3, *image_size))
        body.train()
        if feats.ndim != 4:
            raise CnnkitError(f"expected a backbone with a spatial feature map, found {tuple(feats.shape)}")
        self.out_channels, self.stride = int(feats.shape[1]), image_size[0] / feats.shape[-2]

    def forward(self, x: Tensor) -> Tensor:
        return self.body.forward_features(x)


class MaskRCNNModel(nn.Module):
    """A contract model around torchvision's ``MaskRCNN``: ``forward(x, targets)`` gives the loss dict in training
    mode, and :meth:`evaluate_batch` the detections with their masks.

    Args:
        backbone: a classifier from ``create_model`` (its ``forward_features`` gives the feature map).
        num_classes: object classes (torchvision's class 0 is the background; cnnkit's class k is its k + 1).
        image_size: (H, W) of the stored images (torchvision's ``min_size`` is their shorter side: no resizing).
        mask_head: channels of each 3×3 convolution of the mask branch (runs saved before the change: four of 128).
        roi_sampling: RoI Align's sampling ratio (runs saved before the change: 2).
    """

    kind = KIND
    # what `cnnkit explain` traces: images -> the feature map (the RPN and RoI heads have data-dependent shapes)
    explain_part = "net.backbone"

    def __init__(self, backbone: nn.Module, num_classes: int, image_size: tuple[int, int], *,
                 mask_head: tuple[int, ...] = MASK_HEAD, roi_sampling: int = ROI_SAMPLING) -> None:  # fmt: skip
        super().__init__()
        self.num_classes, self.default_input = num_classes, (3, *image_size)
        side = min(image_size)
        features = Features(backbone, (side, side))
        base = max(4, round(side / 16))
        anchors = AnchorGenerator(sizes=((base, base * 2, base * 4, base * 8),), aspect_ratios=((0.5, 1.0, 2.0),))
        c = features.out_channels
        self.net = MaskRCNN(
            features, min_size=side, max_size=max(side, max(image_size)), image_mean=list(backbone.mean),
            image_std=list(backbone.std), rpn_anchor_generator=anchors,
            box_roi_pool=MultiScaleRoIAlign(["0"], 7, roi_sampling),
            mask_roi_pool=MultiScaleRoIAlign(["0"], 14, roi_sampling),
            box_head=TwoMLPHead(c * 7 * 7, BOX_HEAD), box_predictor=FastRCNNPredictor(BOX_HEAD, num_classes + 1),
            mask_head=MaskRCNNHeads(c, tuple(mask_head), 1),
            mask_predictor=MaskRCNNPredictor(mask_head[-1], mask_head[-1], num_classes + 1),
            rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300, rpn_pre_nms_top_n_test=300,
            rpn_post_nms_top_n_test=100, box_batch_size_per_image=BOX_ROIS, box_detections_per_img=MAX_OBJECTS,
        )  # fmt: skip
        self.mean, self.std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        self.mask_head, self.roi_sampling = tuple(mask_head), roi_sampling
        self.pretrained_cfg = getattr(backbone, "pretrained_cfg", None)

    def forward(self, x: Tensor, targets: list[dict[str, Tensor]] | None = None) -> Any:
        """x: Tensor[N, 3, H, W] in 0-1. Training: the loss dict (``loss_classifier``, ``loss_box_reg``,
        ``loss_mask``, ``loss_objectness``, ``loss_rpn_box_reg``); eval: per image ``boxes`` [D, 4] xyxy pixels,
        ``scores`` [D], ``labels`` [D] (torchvision's, 1-based) and ``masks`` [D, 1, H, W] probabilities."""
        if targets is not None:
            targets = [{"boxes": t["boxes"], "labels": t["labels"] + 1, "masks": t["masks"]} for t in targets]
        return self.net(list(x), targets)

    def group_matcher(self) -> dict[str, list[str]]:
        """The backbone's groups; the RPN and the RoI heads train with (replace) the class head."""
        body = self.net.backbone.body
        groups = {g: [f"net.backbone.body.{p}" for p in ps] for g, ps in body.group_matcher().items()}
        groups["head"] = [*groups.get("head", []), "net.rpn", "net.roi_heads"]
        return groups

    @torch.no_grad()
    def evaluate_batch(self, x: Tensor, targets: list[dict[str, Tensor]] | None = None, conf: float = 0.001
                       ) -> tuple[list[dict[str, Tensor]], Tensor | None]:  # fmt: skip
        """Images Tensor[N, 3, H, W] in 0-1 -> (per image ``boxes`` [D, 4] xyxy pixels, ``scores`` [D], ``labels``
        [D] 0-based, ``masks`` [D, H, W] probabilities, with score ≥ ``conf``; the summed loss against
        ``targets`` when given, else None). The loss is a training-mode pass with BatchNorm and dropout kept in
        eval mode and a fixed random stream for the proposal sampling (the training stream is left as it was)."""
        was = self.training
        loss = None
        if targets is not None:
            self.train()
            for m in self.modules():
                if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.Dropout)):
                    m.eval()
            # the proposal sampling draws random numbers: a fixed stream, and the training stream left untouched
            with torch.random.fork_rng(devices=[x.device] if x.is_cuda else []):
                torch.manual_seed(0)
                loss = sum(self(x, targets).values())
        self.eval()
        self.net.roi_heads.score_thresh = conf
        out = self(x)
        self.train(was)
        preds = [{"boxes": p["boxes"], "scores": p["scores"], "labels": p["labels"] - 1, "masks": p["masks"][:, 0]}
                 for p in out]  # fmt: skip
        return preds, loss


def build_segmenter(name: str, num_classes: int, image_size: tuple[int, int], *, pretrained: bool = False,
                    weights: str | None = None, **heads: Any) -> MaskRCNNModel:  # fmt: skip
    """``maskrcnn_<backbone>`` for ``num_classes`` classes on RGB images of ``image_size`` (H, W); ``heads``:
    :class:`MaskRCNNModel`'s ``mask_head`` and ``roi_sampling``."""
    backbone = create_model(parse_name(name), num_classes=num_classes, in_chans=3, pretrained=pretrained,
                            weights=weights)  # fmt: skip
    return MaskRCNNModel(backbone, num_classes, image_size, **heads)
