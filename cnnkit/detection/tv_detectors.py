"""torchvision's detectors (Faster R-CNN, RetinaNet, SSDlite, FCOS) on a zoo backbone.

The backbone is any contract model: its ``forward_features``, cut at the stage of stride 16 when its final map is
coarser (:func:`~cnnkit.detection.yolo.tap_name`; EfficientNet-Lite0 gives its 112-channel stage, an 8×8 map on a
128×128 image), wrapped as torchvision wants it: ``out_channels`` and an ``OrderedDict`` of one map. Heads, anchors,
losses and post-processing are torchvision's. Sizes are kept small for the CPU: one feature map, no FPN, heads as wide
as the map (128 channels after a 1×1 lateral convolution), few proposals.

cnnkit normalises the images itself (the backbone's mean and std, as for every model), so the detectors'
``GeneralizedRCNNTransform`` gets mean 0 and std 1 (no second normalisation) and min and max sizes equal to the
training size (no resizing). Labels are 0…C−1 in cnnkit; Faster R-CNN and SSD keep 0 for the background, so their
labels are shifted by one going in and coming out.

Train them with a lower learning rate than the YOLO recipe's AdamW 2e-3 (``--lr 0.0001``): their heads start from
weights of std 0.01, which steps of 3e-4 already wipe out (measured: FCOS's box regression, behind a ReLU, then
predicts nothing and its GIoU loss stays at 1).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator, DefaultBoxGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.ssd import SSD
from torchvision.models.detection.ssdlite import SSDLiteHead
from torchvision.ops import MultiScaleRoIAlign

from ..layers import conv_bn_act
from .yolo import Tapped, tap_name

FEATURE_STRIDE = 16  # pixels per cell of the map the heads read
BACKGROUND_FIRST = ("fasterrcnn", "ssdlite")  # kinds whose class 0 is the background


class ZooBackbone(nn.Module):
    """A contract ``model``'s feature map as a torchvision detection backbone, brought to ``out_channels`` by a 1×1
    convolution (FPN's lateral layer; FCOS's GroupNorm wants a multiple of 32).

    ``forward``: images Tensor[N, C, H, W] -> ``OrderedDict(["0", Tensor[N, out_channels, h, w]])``.
    """

    def __init__(self, model: nn.Module, stride: int = FEATURE_STRIDE, out_channels: int = 128) -> None:
        super().__init__()
        self.tap = tap_name(model, stride)
        self.body = Tapped(model, self.tap)
        c, h, w = model.default_input
        was = model.training
        with torch.no_grad():
            fmap = self.body.eval()(torch.zeros(1, c, h, w))
        self.body.train(was)
        self.lateral = conv_bn_act(fmap.shape[1], out_channels, kernel_size=1)
        self.out_channels, self.stride = out_channels, max(1, h // fmap.shape[-2])

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        return OrderedDict([("0", self.lateral(self.body(x)))])


def anchor_sizes(anchors: Tensor | None, image_size: tuple[int, int]) -> tuple[int, ...]:
    """Anchor sides (√(w·h), pixels) from YOLO-style k-means anchors Tensor[B, 2]; else 1/8, 1/4, 1/2 of the image."""
    if anchors is None or not len(anchors):
        side = min(image_size)
        return (max(4, side // 8), max(8, side // 4), max(16, side // 2))
    return tuple(sorted({max(2, round(math.sqrt(w * h))) for w, h in anchors.tolist()}))


def _rcnn_transform_args(image_size: tuple[int, int]) -> dict[str, Any]:
    """No resizing (min and max size = the training size), no normalisation (cnnkit's Normalize already did it)."""
    return {"min_size": min(image_size), "max_size": max(image_size), "image_mean": [0.0] * 3, "image_std": [1.0] * 3}


def fasterrcnn(body: ZooBackbone, num_classes: int, image_size: tuple[int, int], sizes: tuple[int, ...]) -> nn.Module:
    """Faster R-CNN: RPN over ``sizes`` × 3 aspect ratios, RoIAlign 7×7, a two-layer 256-wide box head."""
    gen = AnchorGenerator((sizes,), ((0.5, 1.0, 2.0),))
    pool = MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=2)
    head, predictor = TwoMLPHead(body.out_channels * 49, 256), FastRCNNPredictor(256, num_classes)
    return FasterRCNN(body, rpn_anchor_generator=gen, box_roi_pool=pool, box_head=head, box_predictor=predictor,
                      rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300, rpn_pre_nms_top_n_test=300,
                      rpn_post_nms_top_n_test=150, rpn_batch_size_per_image=128, box_batch_size_per_image=128,
                      **_rcnn_transform_args(image_size))  # fmt: skip


def retinanet(body: ZooBackbone, num_classes: int, image_size: tuple[int, int], sizes: tuple[int, ...]) -> nn.Module:
    """RetinaNet: focal loss, ``sizes`` × 3 aspect ratios per cell, heads as wide as the map."""
    gen = AnchorGenerator((sizes,), ((0.5, 1.0, 2.0),))
    kw = _rcnn_transform_args(image_size)
    return RetinaNet(body, num_classes, anchor_generator=gen, detections_per_img=100, **kw)


def fcos(body: ZooBackbone, num_classes: int, image_size: tuple[int, int], sizes: tuple[int, ...]) -> nn.Module:
    """FCOS: anchor-free, one point per cell. Its 'anchor' places the point and must be one cell wide: torchvision
    samples the points within 1.5 anchor sides of a box's centre (one level takes every box size)."""
    gen = AnchorGenerator(((body.stride,),), ((1.0,),))
    return FCOS(body, num_classes, anchor_generator=gen, **_rcnn_transform_args(image_size))


def ssdlite(body: ZooBackbone, num_classes: int, image_size: tuple[int, int], sizes: tuple[int, ...]) -> nn.Module:
    """SSDlite: depthwise-separable heads, default boxes from 0.1 to 0.5 of the image on the one map (SSD takes
    its fixed size as (W, H))."""
    gen = DefaultBoxGenerator([[2, 3]], min_ratio=0.1, max_ratio=0.5)
    head = SSDLiteHead([body.out_channels], gen.num_anchors_per_location(), num_classes,
                       partial(nn.BatchNorm2d, eps=0.001, momentum=0.03))  # fmt: skip
    return SSD(
        body,
        gen,
        image_size[::-1],
        num_classes,
        image_mean=[0.0] * 3,
        image_std=[1.0] * 3,
        head=head,
        detections_per_img=100,
    )


BUILDERS = {"fasterrcnn": fasterrcnn, "retinanet": retinanet, "fcos": fcos, "ssdlite": ssdlite}


class TorchvisionDetector(nn.Module):
    """One of :data:`BUILDERS` on a zoo ``backbone``, answering the calls every cnnkit detector answers.

    Args:
        kind: ``fasterrcnn``, ``retinanet``, ``fcos`` or ``ssdlite``.
        backbone: a classifier from ``create_model`` with ``default_input`` set to the training size.
        num_classes: object classes (no background).
        anchors: k-means anchors Tensor[B, 2] (pixels), whose sizes the anchor-based kinds use; None: from the size.
    """

    # what `cnnkit explain` traces: images -> the map the heads read (proposals and NMS have data-dependent shapes)
    explain_part = "detector.backbone"

    def __init__(self, kind: str, backbone: nn.Module, num_classes: int, anchors: Tensor | None = None) -> None:
        super().__init__()
        image_size = tuple(backbone.default_input[1:])
        self.kind, self.num_classes, self.shift = kind, num_classes, int(kind in BACKGROUND_FIRST)
        body = ZooBackbone(backbone)
        self.detector = BUILDERS[kind](body, num_classes + self.shift, image_size, anchor_sizes(anchors, image_size))
        self.mean, self.std, self.default_input = backbone.mean, backbone.std, backbone.default_input
        self.pretrained_cfg = getattr(backbone, "pretrained_cfg", None)
        self.tap, self.stride = body.tap, body.stride

    def forward(self, x: Tensor, targets: list[dict[str, Tensor]] | None = None) -> Any:
        """Normalised images Tensor[N, C, H, W] -> training: torchvision's loss dict; eval: per image ``boxes``
        [D, 4] xyxy pixels, ``scores`` [D], ``labels`` [D] (cnnkit's 0…C−1)."""
        if self.training:
            moved = [{"boxes": t["boxes"].float(), "labels": t["labels"] + self.shift} for t in targets or []]
            return self.detector(list(x), moved)
        return [{**p, "labels": p["labels"] - self.shift} for p in self.detector(list(x))]

    def loss_of(self, output: dict[str, Tensor], targets: list[dict[str, Tensor]], box_weight: float = 1.0
                ) -> tuple[Tensor, dict[str, Tensor]]:  # fmt: skip
        """The sum of torchvision's losses (box regression terms times ``box_weight``) and its parts, plus
        ``box``, the sum of the box terms."""
        box = sum(v for k, v in output.items() if "box" in k)
        rest = sum(v for k, v in output.items() if "box" not in k)
        return rest + box_weight * box, {"box": box.detach(), **{k: v.detach() for k, v in output.items()}}

    @torch.no_grad()
    def evaluate_batch(self, x: Tensor, targets: list[dict[str, Tensor]] | None = None, conf: float = 0.001
                       ) -> tuple[list[dict[str, Tensor]], Tensor | None]:  # fmt: skip
        """Normalised images Tensor[N, C, H, W] -> (detections with score ≥ ``conf``; with ``targets`` the loss, from
        a training-mode pass whose BatchNorm statistics stay as they are)."""
        self._set_score_threshold(conf)
        was = self.training
        try:
            loss = self._loss_without_updates(x, targets) if targets is not None else None
            self.eval()
            return self(x), loss
        finally:
            self.train(was)

    def _loss_without_updates(self, x: Tensor, targets: list[dict[str, Tensor]]) -> Tensor:
        self.train()
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self.loss_of(self(x, targets), targets)[0]

    def _set_score_threshold(self, conf: float) -> None:
        holder = self.detector.roi_heads if self.kind == "fasterrcnn" else self.detector
        holder.score_thresh = conf

    def group_matcher(self) -> dict[str, list[str]]:
        """The backbone's groups; the lateral layer and torchvision's heads (RPN, RoI heads, …) train with (replace)
        the class head."""
        model = self.detector.backbone.body.model
        prefix = "detector.backbone.body.model."
        groups = {g: [prefix + p for p in ps] for g, ps in model.group_matcher().items()}
        heads = ["detector.backbone.lateral"]
        heads += [f"detector.{n}" for n, _ in self.detector.named_children() if n != "backbone"]
        groups["head"] = [*groups.get("head", []), *heads]
        return groups

    def describe(self) -> str:
        """The detector, where its backbone is cut and the map its heads read."""
        _, h, w = self.default_input
        tap = f", backbone cut after {self.tap}" if self.tap else ""
        chans = self.detector.backbone.out_channels
        return (
            f"torchvision {self.kind} on one {-(-h // self.stride)}×{-(-w // self.stride)} map of {chans} channels"
            f" ({self.stride} px per cell{tap}), C={self.num_classes}"
        )
