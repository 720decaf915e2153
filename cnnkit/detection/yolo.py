"""A YOLOv2-style detector on any zoo backbone: a classification network run as a convolution over an S×S grid.

The backbone is any contract model (its ``forward_features``); a small neck brings its map to a stride of about 8
pixels (stride-2 conv–BN–LeakyReLU blocks when the map is finer) and a 1×1 convolution predicts, for each of the
S×S cells and each of its B anchors, ``5 + C`` numbers: box offsets ``(t_x, t_y, t_w, t_h)``, objectness ``t_o``
and C class scores, so the output is Tensor[N, B·(5+C), S, S] (S×S×B·(5+C) in the notes' writing).

Decoding, as YOLOv2: the centre is ``((σ(t_x) + j)·stride, (σ(t_y) + i)·stride)`` in cell (i, j) and the size is
the anchor's ``(a_w·e^{t_w}, a_h·e^{t_h})``; the score of a class is ``σ(t_o)·softmax(t_c)``. Each true box is the
responsibility of the anchor of best shape IoU in the cell holding its centre. The loss sums, per image: binary
cross-entropy of objectness (1 for responsible anchors, 0 elsewhere except predictions already overlapping a true
box by more than ``ignore_iou``), cross-entropy of the class and the GIoU loss of the box, both on responsible
anchors. IoU, GIoU, conversions and NMS are ``torchvision.ops``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms, box_convert, box_iou, clip_boxes_to_image, generalized_box_iou_loss

from ..layers import conv_bn_act
from .anchors import wh_iou

TARGET_STRIDE = 8  # pixels per grid cell the neck aims at (16×16 cells on a 128×128 image)
OBJECT_PRIOR = 0.01  # objectness at initialisation (RetinaNet's prior), so the empty cells don't swamp the start


class YOLO(nn.Module):
    """A contract ``backbone`` plus a YOLO head.

    Args:
        backbone: a classifier from ``create_model`` with ``default_input`` set to the training size; its
            ``forward_features`` must give a map Tensor[N, F, h, w].
        anchors: Tensor[B, 2] anchor widths and heights in input pixels.
        width: channels of the neck.
    """

    def __init__(self, backbone: nn.Module, anchors: Tensor, width: int = 128, depth: int = 1) -> None:
        super().__init__()
        c, h, w = backbone.default_input
        self.tap = tap_name(backbone, TARGET_STRIDE)
        self.backbone = Tapped(backbone, self.tap)
        with torch.no_grad():
            feats = self.backbone.eval()(torch.zeros(1, c, h, w, device=_device(backbone)))
        self.backbone.train()
        if feats.ndim != 4:
            raise ValueError(f"expected a backbone with a spatial feature map, found {tuple(feats.shape)}")
        stride, chans, neck = h // feats.shape[-2], feats.shape[1], []
        while stride < TARGET_STRIDE and feats.shape[-2] // 2 >= 2:
            neck.append(conv_bn_act(chans, width, stride=2, act=nn.LeakyReLU))
            chans, stride, feats = width, stride * 2, feats[..., ::2, ::2]
        neck += [conv_bn_act(chans if i == 0 else width, width, act=nn.LeakyReLU) for i in range(depth)]
        self.neck = nn.Sequential(*neck)
        self.num_classes, self.num_anchors, self.stride = backbone.num_classes, len(anchors), stride
        self.grid = (-(-h // stride), -(-w // stride))
        self.head = nn.Conv2d(width, self.num_anchors * (5 + self.num_classes), 1)
        self.register_buffer("anchors", anchors.float().clone())
        self._init_head()
        self.mean, self.std, self.default_input = backbone.mean, backbone.std, backbone.default_input
        self.pretrained_cfg = getattr(backbone, "pretrained_cfg", None)

    def _init_head(self) -> None:
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)
        with torch.no_grad():
            self.head.bias.view(self.num_anchors, -1)[:, 4] = -torch.log(
                torch.tensor((1 - OBJECT_PRIOR) / OBJECT_PRIOR)
            )

    def forward(self, x: Tensor) -> Tensor:
        """x: Tensor[N, C, H, W] -> raw predictions Tensor[N, B·(5+C), S, S] (decode with :meth:`detect`)."""
        return self.head(self.neck(self.backbone(x)))

    def group_matcher(self) -> dict[str, list[str]]:
        """The backbone's groups; the neck and the YOLO head train with (replace) the class head."""
        groups = {g: [f"backbone.model.{p}" for p in ps] for g, ps in self.backbone.model.group_matcher().items()}
        groups["head"] = [*groups.get("head", []), "neck", "head"]
        return groups

    def describe(self) -> str:
        """The grid, the anchors and the output shape, as the notes write them."""
        (sh, sw), b, k = self.grid, self.num_anchors, self.num_classes
        anchors = ", ".join(f"{w:.0f}×{h:.0f}" for w, h in self.anchors.tolist())
        tap = f" (backbone cut after {self.tap})" if self.tap else ""
        return (f"YOLO{tap} grid {sh}×{sw} cells of {self.stride} px, B={b} anchors (w×h px: {anchors}), C={k}:"
                f" output {sh}×{sw}×{b}·(5+{k}) = {sh}×{sw}×{b * (5 + k)}")  # fmt: skip


class _Stop(Exception):
    """Raised by the hook of :class:`Tapped` to end ``forward_features`` early, carrying the map."""

    def __init__(self, out: Tensor) -> None:
        super().__init__()
        self.out = out


class Tapped(nn.Module):
    """A contract ``model``'s ``forward_features``, ended after the module named ``tap`` (whose output it returns,
    Tensor[N, F, h, w]); the whole of ``forward_features`` when ``tap`` is None. The layers after the tap are kept
    (their weights load) but never run."""

    def __init__(self, model: nn.Module, tap: str | None) -> None:
        super().__init__()
        self.model, self.tap = model, tap
        if tap is not None:
            model.get_submodule(tap).register_forward_hook(_raise_output)

    def forward(self, x: Tensor) -> Tensor:
        try:
            out = self.model.forward_features(x)
        except _Stop as stop:
            return stop.out
        if self.tap is not None:
            raise RuntimeError(f"expected forward_features to run {self.tap}, it did not")
        return out


def _raise_output(module: nn.Module, args: tuple, out: Tensor) -> None:
    raise _Stop(out)


@torch.no_grad()
def tap_name(backbone: nn.Module, target: int) -> str | None:
    """Where to cut a backbone whose final map is coarser than ``target`` pixels per cell: the last module of the
    deepest ``group_matcher`` group (stem, stages) whose output is still that fine; None to keep it whole."""
    c, h, w = backbone.default_input
    seen: list[tuple[str, int]] = []
    groups = [ps for g, ps in backbone.group_matcher().items() if g != "head" and ps]
    hooks = [backbone.get_submodule(ps[-1]).register_forward_hook(
        lambda m, i, o, name=ps[-1]: seen.append((name, o.shape[-2])) if torch.is_tensor(o) and o.ndim == 4 else None)
        for ps in groups]  # fmt: skip
    was = backbone.training
    try:
        final = backbone.eval().forward_features(torch.zeros(1, c, h, w, device=_device(backbone)))
    finally:
        backbone.train(was)
        for hook in hooks:
            hook.remove()
    if final.ndim != 4 or h // final.shape[-2] <= target:
        return None
    fine = [name for name, rows in seen if h // rows <= target]
    return fine[-1] if fine else None


def _device(m: nn.Module) -> torch.device:
    p = next(m.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


class Decoded(NamedTuple):
    boxes: Tensor  # [N, S, S, B, 4] xyxy pixels
    objectness: Tensor  # [N, S, S, B] logits
    class_logits: Tensor  # [N, S, S, B, C]


def decode(out: Tensor, anchors: Tensor, stride: int) -> Decoded:
    """Raw output Tensor[N, B·(5+C), S, S] -> boxes ``xyxy`` in pixels, objectness and class logits per anchor."""
    n, _, sh, sw = out.shape
    p = out.float().view(n, len(anchors), -1, sh, sw).permute(0, 3, 4, 1, 2)  # [N, S, S, B, 5+C]
    gy, gx = torch.meshgrid(torch.arange(sh, device=out.device), torch.arange(sw, device=out.device), indexing="ij")
    cx = (p[..., 0].sigmoid() + gx[None, :, :, None]) * stride
    cy = (p[..., 1].sigmoid() + gy[None, :, :, None]) * stride
    wh = anchors.to(out.device) * p[..., 2:4].clamp(max=8).exp()
    boxes = box_convert(torch.cat([cx[..., None], cy[..., None], wh], -1), "cxcywh", "xyxy")
    return Decoded(boxes, p[..., 4], p[..., 5:])


def assign(targets: list[dict[str, Tensor]], anchors: Tensor, grid: tuple[int, int], stride: int) -> tuple[Tensor, ...]:
    """Which anchor answers for each true box: the cell holding its centre, the anchor of best shape IoU.

    Returns:
        (image Tensor[M], row Tensor[M], column Tensor[M], anchor Tensor[M], boxes Tensor[M, 4] xyxy, labels [M])
        over all M boxes of the batch.
    """
    boxes = torch.cat([t["boxes"] for t in targets]).float().reshape(-1, 4)
    labels = torch.cat([t["labels"] for t in targets]).long()
    image = torch.cat([torch.full((len(t["labels"]),), i, dtype=torch.long) for i, t in enumerate(targets)])
    image = image.to(boxes.device)
    cxcywh = box_convert(boxes, "xyxy", "cxcywh")
    col = (cxcywh[:, 0] / stride).long().clamp(0, grid[1] - 1)
    row = (cxcywh[:, 1] / stride).long().clamp(0, grid[0] - 1)
    anchor = wh_iou(cxcywh[:, 2:], anchors.to(boxes.device)).argmax(1) if len(boxes) else labels.clone()
    return image, row, col, anchor, boxes, labels


def yolo_loss(out: Tensor, targets: list[dict[str, Tensor]], anchors: Tensor, stride: int, box_weight: float = 1.0,
              ignore_iou: float = 0.6) -> tuple[Tensor, dict[str, Tensor]]:  # fmt: skip
    """The YOLO loss of raw output Tensor[N, B·(5+C), S, S] against N targets (``boxes`` xyxy pixels, ``labels``).

    Returns:
        (loss averaged over images, {"objectness", "class", "box"} parts, each per image).
    """
    d = decode(out, anchors, stride)
    n = out.shape[0]
    image, row, col, anchor, boxes, labels = assign(targets, anchors, tuple(out.shape[-2:]), stride)
    obj_target = torch.zeros_like(d.objectness)
    weight = torch.ones_like(d.objectness)
    with torch.no_grad():
        for i, t in enumerate(targets):
            if len(t["boxes"]):
                best = box_iou(d.boxes[i].reshape(-1, 4), t["boxes"].float()).max(1).values
                weight[i] = (best <= ignore_iou).float().view_as(weight[i])
    obj_target[image, row, col, anchor] = 1.0
    weight[image, row, col, anchor] = 1.0
    obj = (F.binary_cross_entropy_with_logits(d.objectness, obj_target, reduction="none") * weight).sum() / n
    cls = F.cross_entropy(d.class_logits[image, row, col, anchor], labels, reduction="sum") / n
    box = generalized_box_iou_loss(d.boxes[image, row, col, anchor], boxes, reduction="sum") / n
    return obj + cls + box_weight * box, {"objectness": obj.detach(), "class": cls.detach(), "box": box.detach()}


MAX_DET = 100  # detections kept per image, best first
OUTPUTS = ("boxes", "scores", "labels", "counts")  # detect_flat's flat list (and an exported detector's outputs)
CANDIDATES = 10  # (anchor, class) pairs per kept detection that NMS sees: the best 10·max_det scores


@torch.no_grad()
def detect(out: Tensor, anchors: Tensor, stride: int, image_size: tuple[int, int], conf: float = 0.001,
           iou: float = 0.5, max_det: int = MAX_DET) -> list[dict[str, Tensor]]:  # fmt: skip
    """Raw output -> per image ``boxes`` Tensor[D, 4] xyxy pixels, ``scores`` Tensor[D], ``labels`` Tensor[D]:
    every (anchor, class) whose score σ(t_o)·softmax(t_c) passes ``conf``, clipped to the image, class-wise NMS, the
    ``max_det`` best."""
    return split_outputs(detect_flat(out, anchors, stride, image_size, conf, iou, CANDIDATES * max_det), cap=max_det)


def detect_flat(out: Tensor, anchors: Tensor, stride: int, image_size: tuple[int, int], conf: float = 0.001,
                iou: float = 0.5, candidates: int = CANDIDATES * MAX_DET
                ) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
    """Raw output Tensor[N, B·(5+C), S, S] -> the detections of every image in one flat list, as the ONNX export
    returns them (traceable: no loop over images, ONNX's NonMaxSuppression).

    Per image: the ``candidates`` best (anchor, class) scores σ(t_o)·softmax(t_c), those above ``conf``, boxes
    clipped to the image, class-wise NMS at ``iou`` (no cap on the number kept: :func:`split_outputs` caps).

    Returns:
        boxes Tensor[D, 4] xyxy pixels, scores Tensor[D], labels Tensor[D] int64 and counts Tensor[N] int64: image
        i's detections are the ``counts[i]`` rows after those of images 0…i−1, best score first.
    """
    d = decode(out, anchors, stride)
    n, k = out.shape[0], d.class_logits.shape[-1]
    scores = (d.objectness.sigmoid()[..., None] * d.class_logits.softmax(-1)).reshape(n, -1)  # [N, S·S·B·C]
    boxes = clip_boxes_to_image(d.boxes.reshape(n, -1, 4), image_size)  # [N, S·S·B, 4]
    top, index = scores.topk(min(candidates, scores.shape[1]), dim=1)  # [N, T], best first
    cand = boxes.gather(1, (index // k)[..., None].expand(-1, -1, 4))  # [N, T, 4]
    classes = torch.arange(k, device=out.device)
    by_class = torch.where(classes[None, :, None] == (index % k)[:, None, :], top[:, None, :], 0.0)  # [N, C, T]
    image, label, j = ClassNMS.apply(cand, by_class, iou, conf).unbind(1)
    s = top[image, j]
    order = (image.double() * 2 - s.double()).argsort()  # by image, then best score first (scores are in (0, 1])
    image, label, j, s = image[order], label[order], j[order], s[order]
    counts = (image[None, :] == torch.arange(n, device=out.device)[:, None]).sum(1)
    return cand[image, j], s, label, counts


class ClassNMS(torch.autograd.Function):
    """Class-wise NMS of each image's candidates: boxes Tensor[N, T, 4] xyxy and scores Tensor[N, C, T] -> the kept
    (image, class, candidate) Tensor[K, 3] int64, those whose score passes ``conf`` and that no better box of their
    image and class overlaps by more than ``iou``. In PyTorch ``torchvision.ops.batched_nms`` per image; in ONNX
    one NonMaxSuppression node, which loops over images and classes itself (no coordinate offsets, whose float
    precision shrinks as images × classes grow)."""

    @staticmethod
    def forward(ctx: Any, boxes: Tensor, scores: Tensor, iou: float, conf: float) -> Tensor:
        rows = []
        for i in range(boxes.shape[0]):
            s, label = scores[i].max(0)
            cand = (s > conf).nonzero().squeeze(1)
            keep = cand[batched_nms(boxes[i][cand], s[cand], label[cand], iou)]
            rows.append(torch.stack([torch.full_like(keep, i), label[keep], keep], 1))
        return torch.cat(rows) if rows else torch.zeros(0, 3, dtype=torch.long, device=boxes.device)

    @staticmethod
    def symbolic(g: Any, boxes: Any, scores: Any, iou: float, conf: float) -> Any:
        def const(v: float | int, dtype: torch.dtype) -> Any:
            return g.op("Constant", value_t=torch.tensor([v], dtype=dtype))

        return g.op("NonMaxSuppression", boxes, scores, const(2**31 - 1, torch.long), const(iou, torch.float),
                    const(conf, torch.float))  # fmt: skip


def split_outputs(outs: Sequence[Tensor], names: Sequence[str] = OUTPUTS, cap: int | None = MAX_DET
                  ) -> list[dict[str, Tensor]]:  # fmt: skip
    """Flat outputs named ``names`` (``counts`` [N] among them; the others one row per detection, as
    :func:`detect_flat` and an exported detector return them) -> per image a dict of the others, the ``cap`` best
    (all with None); ``labels`` as int64."""
    named = dict(zip(names, outs))
    sizes = named.pop("counts").long().tolist()
    parts = {k: (v.long() if k == "labels" else v).split(sizes) for k, v in named.items()}
    return [{k: p[i][:cap] for k, p in parts.items()} for i in range(len(sizes))]
