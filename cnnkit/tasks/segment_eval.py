"""After a segmentation run: objects with masks (``cnnkit.load``, ``cnnkit predict``: each instance's mask overlaid
in its own colour with its label), ``cnnkit evaluate`` (COCO mask and box mAP, mask AP per class; predictions
saved as COCO results JSON with RLE masks) and the report (AP per class, the worst images drawn)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.utils import draw_segmentation_masks

from ..data.splits import describe_split
from ..drawing import draw_boxes, image_grid
from ..engine.checkpoint import load_weights
from ..evaluate.report import config_blocks, render_html, render_markdown, training_blocks
from ..evaluate.tables import fmt, text_table
from ..io import json_safe, write_json, write_text
from ..predict import ImageLike, Predictor
from ..runcard import model_path, read_card
from ..segmentation.data import SegmentationImages
from ..segmentation.metrics import binary, coco_segm_ground_truth, coco_segm_results, segmentation_map
from .common import evaluate_each, run_split, split_metrics
from .localize_eval import full_image, original_size, save_png
from .segment import Segment, predict_instances

SHOW_CONF = 0.5  # score threshold for the objects people see (predict, drawings); mAP uses every object
PALETTE = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c",
           "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8", "#800000", "#aaffc3"]  # fmt: skip


@dataclass
class SegmentedObject:
    """One object: class, score, box ``xyxy`` in the image's own pixels and its mask's area in those pixels."""

    label: str
    index: int
    score: float
    box: tuple[float, float, float, float]
    area: int

    def describe(self) -> str:
        x1, y1, x2, y2 = self.box
        return f"{self.label} {self.score:.0%} at x1 {x1:.0f} y1 {y1:.0f} x2 {x2:.0f} y2 {y2:.0f}, {self.area} px"


@dataclass
class ImageInstances:
    """Every object found in one image, best score first; ``masks`` bool Tensor[D, H, W] at the image's size."""

    objects: list[SegmentedObject] = field(default_factory=list)
    masks: Tensor | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"objects": [vars(o) | {"box": list(o.box)} for o in self.objects]}

    def describe(self) -> str:
        if not self.objects:
            return f"no objects (score ≥ {SHOW_CONF})"
        return f"{len(self.objects)} object(s): " + "; ".join(o.describe() for o in self.objects)


def overlay(image: Tensor, masks: Tensor, boxes: Tensor, labels: list[str], scale: int = 1) -> Tensor:
    """uint8 Tensor[3, H, W], bool masks Tensor[D, H, W], boxes Tensor[D, 4] -> uint8 Tensor[3, H·s, W·s]: each
    mask filled in its own colour (half transparent) and its label written at its box."""
    colours = [PALETTE[i % len(PALETTE)] for i in range(len(masks))]
    if scale > 1:
        image = F.interpolate(image[None].float(), scale_factor=scale, mode="nearest")[0].to(torch.uint8)
        masks = resize(masks.float(), (image.shape[-2], image.shape[-1]), "nearest")
    drawn = draw_segmentation_masks(image, masks, alpha=0.5, colors=colours) if len(masks) else image
    return draw_boxes(drawn, boxes * scale, labels, colours, width=1) if len(boxes) else drawn


def resize(masks: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    """float masks Tensor[D, h, w] -> Tensor[D, H, W] (``bool`` for ``nearest``); D may be 0."""
    if not len(masks):
        return masks.new_zeros(0, *size, dtype=torch.bool if mode == "nearest" else masks.dtype)
    out = F.interpolate(
        masks[None].float(), size=size, mode=mode, **({} if mode == "nearest" else {"align_corners": False})
    )[0]
    return out.bool() if mode == "nearest" else out


class SegmentPredictor(Predictor):
    """A trained Mask R-CNN with its classes and preprocessing (``cnnkit.load`` of a segment run)."""

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str = "cpu", weights: str = "model.safetensors"
                 ) -> SegmentPredictor:  # fmt: skip
        run_dir = Path(run_dir)
        card = read_card(run_dir)
        model = Segment().build_from_card(card, model_path(card, run_dir))
        load_weights(model, run_dir / weights)
        return cls(model, card, device)

    @torch.no_grad()
    def segment(self, images: list[ImageLike], conf: float = SHOW_CONF) -> list[dict[str, Tensor]]:
        """images -> per image ``boxes`` [D, 4], ``scores`` [D], ``labels`` [D], ``masks`` [D, H, W] probabilities,
        in the model's input pixels.

        An exported model (ONNX Runtime) holds every object with score above the task's EVAL_CONF; ``conf`` keeps
        those above it, as PyTorch's Mask R-CNN does (a lower ``conf`` finds no more)."""
        x = torch.stack([self.to_tensor(im) for im in images])
        out = []
        for b in x.split(16):
            if hasattr(self.model, "evaluate_batch"):
                found = self.model.evaluate_batch(self.normalize(b), None, conf)[0]
            else:  # an OrtModule: the file's objects, thresholded here
                found = [{k: v[p["scores"] > conf] for k, v in p.items()} for p in self.model(self.normalize(b))]
            out += [{k: v.cpu() for k, v in p.items()} for p in found]
        return out

    def predict(self, images: Iterable[ImageLike], topk: int = 1, conf: float = SHOW_CONF) -> list[ImageInstances]:
        """The objects of each image with score ≥ ``conf``, boxes and masks at the image's own size (``topk``
        unused)."""
        images, out = list(images), []
        for im, p in zip(images, self.segment(images, conf)):
            h, w = original_size(im)
            scale = torch.tensor([w / self.size[1], h / self.size[0]] * 2)
            masks = binary(resize(p["masks"], (h, w), "bilinear"))
            objects = [SegmentedObject(self.classes[k], k, float(s), tuple(round(v, 1) for v in (b * scale).tolist()),
                                       int(m.sum())) for b, s, k, m in
                       zip(p["boxes"], p["scores"].tolist(), p["labels"].tolist(), masks)]  # fmt: skip
            out.append(ImageInstances(objects, masks))
        return out

    def render(self, image: ImageLike, pred: ImageInstances) -> Tensor:
        """``image`` with every object's mask in its own colour and its label: uint8 Tensor[3, H·s, W·s] (small
        images enlarged)."""
        pixels = full_image(image)
        boxes = torch.tensor([o.box for o in pred.objects]).reshape(-1, 4)
        labels = [f"{o.label} {o.score:.0%}" for o in pred.objects]
        return overlay(pixels, pred.masks, boxes, labels, scale=max(1, 256 // max(pixels.shape[-2:])))

    def draw(self, images: list[ImageLike], preds: list[ImageInstances], out_dir: str | Path) -> list[Path]:
        """Write each image as :meth:`render` draws it, as ``OUT/<name>_masks.png``."""
        written = []
        for n, (im, p) in enumerate(zip(images, preds)):
            name = Path(im).stem if isinstance(im, (str, Path)) else f"image_{n}"
            written.append(save_png(self.render(im, p), Path(out_dir) / f"{name}_masks.png"))
        return written


# ---- evaluation ------------------------------------------------------------------------------------------------
@dataclass
class SegEvaluation:
    """A run's objects on one split (score ≥ 0.001) and the split's images and true objects."""

    run: Path
    split: str
    source: str
    classes: list[str]
    data: SegmentationImages
    preds: list[dict[str, Tensor]]

    def metrics(self) -> dict[str, Any]:
        m = segmentation_map(self.preds, self.data.targets, len(self.classes))
        labels = [t["labels"] for t in self.data.targets]
        counts = torch.bincount(torch.cat(labels), minlength=len(self.classes)) if labels else torch.zeros(1)
        per_class = {name: {"objects": int(counts[k]), "mask_ap": m["per_class"][k]["segm"],
                            "mask_ap50": m["per_class"][k]["segm_50"], "box_ap": m["per_class"][k]["bbox"]}
                     for k, name in enumerate(self.classes)}  # fmt: skip
        return {"run": str(self.run), "task": "segment", "data": self.source, "split": self.split, "n": len(self.data),
                "objects": int(counts.sum()), **{k: v for k, v in m.items() if k != "per_class"},
                "per_class": per_class}  # fmt: skip


def evaluate_run(run: str | Path, data: str | None = None, split: str = "test", device: str = "cpu") -> SegEvaluation:
    """Segment the ``split`` of the run's own data (checked against the run's record), or of ``data``."""
    card, splits, ds, name = run_split(Segment(), run, split, data)
    predictor = SegmentPredictor.from_run(run, device)
    return SegEvaluation(Path(run), name, splits.source, card.classes, ds,
                         predict_instances(predictor.model, ds, predictor.normalize))  # fmt: skip


def format_metrics(m: dict[str, Any]) -> str:
    lines = [f"{describe_split(m['split'], m['data'])}: {m['n']} images, {m['objects']} objects, {len(m['per_class'])}"
             " classes",
             f"  mask mAP@[.5:.95] {fmt(m['segm_map'])}   mask mAP@0.5 {fmt(m['segm_map_50'])}   mask mAP@0.75"
             f" {fmt(m['segm_map_75'])}   (COCO segm, pycocotools)",
             f"  box  mAP@[.5:.95] {fmt(m['bbox_map'])}   box  mAP@0.5 {fmt(m['bbox_map_50'])}   box  mAP@0.75"
             f" {fmt(m['bbox_map_75'])}   (COCO bbox)", "per class:"]  # fmt: skip
    rows = [[name, str(c["objects"]), fmt(c["mask_ap"]), fmt(c["mask_ap50"]), fmt(c["box_ap"])]
            for name, c in m["per_class"].items()]  # fmt: skip
    lines.append(text_table((["class", "objects", "mask AP@[.5:.95]", "mask AP@0.5", "box AP@[.5:.95]"], rows)))
    return "\n".join(lines)


def save_predictions(ev: SegEvaluation, path: str | Path) -> tuple[Path, Path]:
    """The objects as COCO results JSON (RLE masks) at ``path`` and the true objects as a COCO annotations file
    beside it (``<stem>_ground_truth.json``), for pycocotools' ``COCOeval(..., "segm")``."""
    path = Path(path)
    gt = coco_segm_ground_truth(ev.data.targets, ev.classes, tuple(ev.data.images.shape[-2:]), ev.data.ids)
    gt_path = write_json(path.with_name(f"{path.stem}_ground_truth.json"), gt)
    return write_json(path, coco_segm_results(ev.preds)), gt_path


def evaluate_command(
    runs: list[str],
    *,
    data: str | None = None,
    split: str = "test",
    data_dir: str | None = None,
    ensemble: bool = False,
    ensemble_mode: str = "prob",
    tta: bool = False,
    predictions: str | None = None,
    gallery: str | None = None,
    device: str = "cpu",
) -> list[tuple[dict[str, Any], str]]:
    """``cnnkit evaluate`` for segmentation runs, one at a time (no ensembles or TTA of masks)."""

    def one(run: str) -> tuple[dict[str, Any], list[str]]:
        ev = evaluate_run(run, data, split, device)
        m = split_metrics(ev)
        lines = [format_metrics(m)]
        if predictions:
            res, gt = save_predictions(ev, predictions)
            lines.append(f"  predictions saved to {res} (COCO results, RLE masks), true objects to {gt}")
        if gallery:
            lines.append(f"  worst images saved to {write_worst(ev, Path(gallery))}")
        return json_safe(m), lines

    return evaluate_each("segment", runs, one, ensemble=ensemble, tta=tta, many_files=bool(predictions or gallery),
                         data=data)  # fmt: skip


def mask_errors(pred: dict[str, Tensor], target: dict[str, Tensor], conf: float = SHOW_CONF) -> float:
    """1 − the mean best mask IoU of the true objects, plus the false objects (score ≥ ``conf``) with no true
    object of mask IoU ≥ 0.5: how wrong one image is, to rank the worst."""
    keep = pred["scores"] >= conf
    p, t = binary(pred["masks"][keep]).flatten(1).float(), target["masks"].flatten(1).float()
    if not len(t):
        return float(len(p))
    if not len(p):
        return float(len(t))
    inter = t @ p.T
    iou = inter / (t.sum(1, keepdim=True) + p.sum(1)[None] - inter).clamp(min=1)
    return float((1 - iou.max(1).values).sum() + (iou.max(0).values < 0.5).sum())


def write_worst(ev: SegEvaluation, path: Path, count: int = 8) -> Path:
    """The ``count`` worst images, each as two tiles: the true masks, then the predicted ones (score ≥ 0.5)."""
    errors = torch.tensor([mask_errors(p, t) for p, t in zip(ev.preds, ev.data.targets)])
    scale = max(1, 128 // ev.data.images.shape[-1])
    tiles = []
    for i in errors.argsort(descending=True, stable=True)[:count].tolist():
        p, t, image = ev.preds[i], ev.data.targets[i], ev.data.images[i]
        keep = p["scores"] >= SHOW_CONF
        tiles.append(
            overlay(image, t["masks"].bool(), t["boxes"], [ev.classes[k] for k in t["labels"].tolist()], scale)
        )
        labels = [f"{ev.classes[k]} {s:.2f}" for k, s in zip(p["labels"][keep].tolist(), p["scores"][keep].tolist())]
        tiles.append(overlay(image, binary(p["masks"][keep]), p["boxes"][keep], labels, scale))
    return save_png(image_grid(tiles, cols=4), path)


def write_report(run_dir: str | Path, *, data: str | None = None, split: str = "test", data_dir: str | None = None
                 ) -> Path:  # fmt: skip
    """``report.html`` and ``report.md``: overview, training curves, mask AP per class, the worst images."""
    run_dir = Path(run_dir)
    ev = evaluate_run(run_dir, data, split)
    m = ev.metrics()
    card = read_card(run_dir)
    rows = [["model", card.model], ["trained on", card.data], ["classes", ", ".join(card.classes)],
            [f"{split} images", str(m["n"])], ["objects", str(m["objects"])], ["mask mAP@0.5", fmt(m["segm_map_50"])],
            ["mask mAP@[.5:.95]", fmt(m["segm_map"])], ["box mAP@0.5", fmt(m["bbox_map_50"])]]  # fmt: skip
    blocks = [("h1", f"Report: {run_dir.name} (instance segmentation)"), ("table", (["", ""], rows))]
    blocks += training_blocks(run_dir)
    if m["n"] and not math.isnan(m["segm_map"]):
        from ..evaluate.report import FILES

        write_worst(ev, run_dir / FILES / "worst_images.png")
        blocks += [("h2", "AP per class"), ("pre", format_metrics(m).split("per class:\n", 1)[1]),
                   ("h2", "The worst images"),
                   ("p", f"Pairs of tiles: the true masks, then the predicted ones (score ≥ {SHOW_CONF})."),
                   ("img", (f"{FILES}/worst_images.png", "worst images"))]  # fmt: skip
    blocks += config_blocks(run_dir)
    write_text(run_dir / "report.md", render_markdown(blocks))
    return write_text(run_dir / "report.html", render_html(blocks, f"cnnkit report: {run_dir.name}"))
