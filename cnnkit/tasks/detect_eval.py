"""After a detection run: detections (``cnnkit.load``, ``cnnkit predict``), ``cnnkit evaluate`` (COCO mAP@[.5:.95],
mAP@0.5, mAP@0.75, AP per class; predictions saved as COCO results JSON) and the report (precision-recall curves,
AP per class, the worst images drawn with predicted and true boxes)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchvision.ops import box_iou

from ..data.splits import describe_split
from ..detection.data import DetectionImages
from ..detection.metrics import coco_ground_truth, coco_results, mean_average_precision
from ..drawing import draw_boxes, image_grid
from ..engine.checkpoint import load_weights
from ..evaluate.report import FILES, config_blocks, render_html, render_markdown, training_blocks
from ..evaluate.tables import fmt, text_table
from ..io import save_figure, write_json, write_text
from ..predict import ImageLike, Predictor
from ..runcard import model_path, read_card
from .common import evaluate_each, run_split, split_metrics
from .detect import Detect, predict_detections
from .localize_eval import full_image, original_size, save_png

SHOW_CONF = 0.25  # score threshold for the boxes people see (predict, drawings); mAP uses every box


@dataclass
class Detection:
    """One detected object: class, score and box ``xyxy`` in the image's own pixels."""

    label: str
    index: int
    score: float
    box: tuple[float, float, float, float]

    def describe(self) -> str:
        x1, y1, x2, y2 = self.box
        return f"{self.label} {self.score:.0%} at x1 {x1:.0f} y1 {y1:.0f} x2 {x2:.0f} y2 {y2:.0f}"


@dataclass
class ImageDetections:
    """Every object found in one image, best score first."""

    objects: list[Detection] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"objects": [vars(o) | {"box": list(o.box)} for o in self.objects]}

    def describe(self) -> str:
        if not self.objects:
            return f"no objects (score ≥ {SHOW_CONF})"
        return f"{len(self.objects)} object(s): " + "; ".join(o.describe() for o in self.objects)


class DetectPredictor(Predictor):
    """A trained detector with its classes and preprocessing (``cnnkit.load`` of a detect run)."""

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str = "cpu", weights: str = "model.safetensors") -> DetectPredictor:
        run_dir = Path(run_dir)
        card = read_card(run_dir)
        model = Detect().build_from_card(card, model_path(card, run_dir))
        load_weights(model, run_dir / weights)
        return cls(model, card, device)

    @torch.no_grad()
    def detect(self, images: list[ImageLike], conf: float = SHOW_CONF, batch_size: int = 64) -> list[dict[str, Tensor]]:
        """images -> per image ``boxes`` [D, 4] xyxy in the model's input pixels, ``scores`` [D], ``labels`` [D].

        An exported model (ONNX Runtime) holds every detection with score above the task's EVAL_CONF; ``conf``
        keeps those above it, as PyTorch's detector does (a lower ``conf`` finds no more)."""
        x = torch.stack([self.to_tensor(im) for im in images])
        out = []
        for b in x.split(batch_size):
            if hasattr(self.model, "evaluate_batch"):
                found = self.model.evaluate_batch(self.normalize(b), None, conf)[0]
            else:  # an OrtModule: the file's detections, thresholded here
                found = [{k: v[p["scores"] > conf] for k, v in p.items()} for p in self.model(self.normalize(b))]
            out += [{k: v.cpu() for k, v in p.items()} for p in found]
        return out

    def predict(self, images: Iterable[ImageLike], topk: int = 1, conf: float = SHOW_CONF) -> list[ImageDetections]:
        """The objects of each image with score ≥ ``conf``, boxes in the image's own pixels (``topk`` unused)."""
        images = list(images)
        out = []
        for im, p in zip(images, self.detect(images, conf)):
            h, w = original_size(im)
            scale = torch.tensor([w / self.size[1], h / self.size[0]] * 2)
            objects = [Detection(self.classes[k], k, float(s), tuple(round(v, 1) for v in (b * scale).tolist()))
                       for b, s, k in zip(p["boxes"], p["scores"].tolist(), p["labels"].tolist())]  # fmt: skip
            out.append(ImageDetections(objects))
        return out

    def render(self, image: ImageLike, pred: ImageDetections) -> Tensor:
        """``image`` with its boxes, classes and scores drawn: uint8 Tensor[3, H·s, W·s] (small images enlarged)."""
        pixels = full_image(image)
        boxes = torch.tensor([o.box for o in pred.objects]).reshape(-1, 4)
        return draw_boxes(pixels, boxes, [f"{o.label} {o.score:.0%}" for o in pred.objects],
                          ["lime"] * len(pred.objects), scale=max(1, 256 // max(pixels.shape[-2:])))  # fmt: skip

    def draw(self, images: list[ImageLike], preds: list[ImageDetections], out_dir: str | Path) -> list[Path]:
        """Write each image as :meth:`render` draws it, as ``OUT/<name>_boxes.png``."""
        written = []
        for n, (im, p) in enumerate(zip(images, preds)):
            name = Path(im).stem if isinstance(im, (str, Path)) else f"image_{n}"
            written.append(save_png(self.render(im, p), Path(out_dir) / f"{name}_boxes.png"))
        return written


# ---- evaluation ------------------------------------------------------------------------------------------------
@dataclass
class DetEvaluation:
    """A run's detections on one split (every box with score ≥ 0.001) and the split's images and true boxes."""

    run: Path
    split: str
    source: str
    classes: list[str]
    data: DetectionImages
    preds: list[dict[str, Tensor]]

    def metrics(self, curves: bool = False) -> dict[str, Any]:
        m = mean_average_precision(self.preds, self.data.targets, len(self.classes), curves=curves)
        counts = torch.bincount(torch.cat([t["labels"] for t in self.data.targets]), minlength=len(self.classes))
        per_class = {name: {"objects": int(counts[k]), "ap": m["per_class"][k], "ap50": m["per_class_50"][k]}
                     for k, name in enumerate(self.classes)}  # fmt: skip
        out = {"run": str(self.run), "task": "detect", "data": self.source, "split": self.split, "n": len(self.data),
               "objects": int(counts.sum()), "map": m["map"], "map_50": m["map_50"], "map_75": m["map_75"],
               "per_class": per_class}  # fmt: skip
        return out | ({"precision": m["precision"], "recall_points": m["recall_points"]} if curves else {})


def evaluate_run(run: str | Path, data: str | None = None, split: str = "test", data_dir: str | None = None,
                 device: str = "cpu") -> DetEvaluation:  # fmt: skip
    """Detect on the ``split`` of the run's own data (checked against the run's record), or of ``data``."""
    card, splits, ds, name = run_split(Detect(), run, split, data)
    predictor = DetectPredictor.from_run(run, device)
    return DetEvaluation(
        Path(run), name, splits.source, card.classes, ds, predict_detections(predictor.model, ds, predictor.normalize)
    )


def format_metrics(m: dict[str, Any]) -> str:
    lines = [f"{describe_split(m['split'], m['data'])}: {m['n']} images, {m['objects']} objects, {len(m['per_class'])}"
             f" classes", f"  mAP@[.5:.95] {fmt(m['map'])}   mAP@0.5 {fmt(m['map_50'])}   mAP@0.75 {fmt(m['map_75'])}"
             "   (COCO, pycocotools)", "per class:"]  # fmt: skip
    rows = [[name, str(c["objects"]), fmt(c["ap"]), fmt(c["ap50"])] for name, c in m["per_class"].items()]
    lines.append(text_table((["class", "objects", "AP@[.5:.95]", "AP@0.5"], rows)))
    return "\n".join(lines)


def save_predictions(ev: DetEvaluation, path: str | Path) -> tuple[Path, Path]:
    """The detections as COCO results JSON at ``path`` and the true boxes as a COCO annotations file beside it
    (``<stem>_ground_truth.json``), so pycocotools' ``COCOeval`` (or any COCO tool) scores them again."""
    path = Path(path)
    gt = coco_ground_truth(ev.data.targets, ev.classes, tuple(ev.data.images.shape[-2:]), ev.data.ids)
    gt_path = write_json(path.with_name(f"{path.stem}_ground_truth.json"), gt)
    return write_json(path, coco_results(ev.preds)), gt_path


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
    """``cnnkit evaluate`` for detection runs, one at a time (no ensembles or TTA of boxes)."""

    def one(run: str) -> tuple[dict[str, Any], list[str]]:
        ev = evaluate_run(run, data, split, data_dir, device)
        m = split_metrics(ev)
        lines = [format_metrics(m)]
        if predictions:
            res, gt = save_predictions(ev, predictions)
            lines.append(f"  predictions saved to {res} (COCO results), true boxes to {gt} (COCO annotations)")
        if gallery:
            lines.append(f"  worst images saved to {write_worst(ev, Path(gallery))}")
        return m, lines

    opts = {"ensemble": ensemble, "tta": tta, "many_files": bool(predictions or gallery), "data": data}
    return evaluate_each("detect", runs, one, **opts)


def image_errors(pred: dict[str, Tensor], target: dict[str, Tensor], conf: float = SHOW_CONF) -> int:
    """Missed true boxes plus false detections (score ≥ ``conf``) of one image, matching greedily by score at
    IoU ≥ 0.5 within a class."""
    keep = pred["scores"] >= conf
    boxes, labels = pred["boxes"][keep], pred["labels"][keep]
    iou = (
        box_iou(boxes, target["boxes"])
        if len(boxes) and len(target["boxes"])
        else torch.zeros(len(boxes), len(target["boxes"]))
    )
    iou[labels[:, None] != target["labels"][None, :]] = 0
    matched = set()
    for i in range(len(boxes)):
        free = [j for j in range(iou.shape[1]) if j not in matched and iou[i, j] >= 0.5]
        if free:
            matched.add(max(free, key=lambda j: float(iou[i, j])))
    return (len(boxes) - len(matched)) + (len(target["boxes"]) - len(matched))


def write_worst(ev: DetEvaluation, path: Path, count: int = 8) -> Path:
    """The ``count`` images with the most errors: true boxes green, detections (score ≥ 0.25) red with their
    class and score."""
    errors = torch.tensor([image_errors(p, t) for p, t in zip(ev.preds, ev.data.targets)])
    tiles = []
    for i in errors.argsort(descending=True, stable=True)[:count].tolist():
        p, t = ev.preds[i], ev.data.targets[i]
        keep = p["scores"] >= SHOW_CONF
        boxes = torch.cat([t["boxes"], p["boxes"][keep]])
        labels = [ev.classes[k] for k in t["labels"].tolist()]
        labels += [f"{ev.classes[k]} {s:.2f}" for k, s in zip(p["labels"][keep].tolist(), p["scores"][keep].tolist())]
        colours = ["lime"] * len(t["boxes"]) + ["red"] * int(keep.sum())
        tiles.append(draw_boxes(ev.data.images[i].expand(3, -1, -1), boxes, labels, colours,
                                scale=max(1, 256 // ev.data.images.shape[-1])))  # fmt: skip
    return save_png(image_grid(tiles, cols=4), path)


def plot_pr_curves(m: dict[str, Any], classes: list[str], path: Path) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    for k, name in enumerate(classes):
        p = m["precision"][:, k]
        if (p > -1).any():
            ax.plot(m["recall_points"], p.clip(min=0), label=f"{name} (AP@.5 {m['per_class'][name]['ap50']:.2f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"precision-recall at IoU 0.5 ({m['split']} split), mAP@0.5 {m['map_50']:.3f}")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_ap_per_class(m: dict[str, Any], path: Path) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    names = list(m["per_class"])
    x = torch.arange(len(names)).numpy()
    ax.bar(x - 0.2, [m["per_class"][n]["ap50"] for n in names], 0.4, label="AP@0.5")
    ax.bar(x + 0.2, [m["per_class"][n]["ap"] for n in names], 0.4, label="AP@[.5:.95]")
    ax.set_xticks(x, names, rotation=45 if len(names) > 10 else 0)
    ax.set_ylim(0, 1)
    ax.set_title("AP per class")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def write_report(run_dir: str | Path, *, data: str | None = None, split: str = "test", data_dir: str | None = None
                 ) -> Path:  # fmt: skip
    """``report.html`` and ``report.md``: overview, curves, PR curves, AP per class, the worst images."""
    run_dir = Path(run_dir)
    ev = evaluate_run(run_dir, data, split, data_dir)
    m = ev.metrics(curves=bool(len(ev.data)))
    card = read_card(run_dir)
    rows = [["model", card.model], ["trained on", card.data], ["classes", ", ".join(card.classes)],
            [f"{split} images", str(m["n"])], ["objects", str(m["objects"])], ["mAP@[.5:.95]", fmt(m["map"])],
            ["mAP@0.5", fmt(m["map_50"])], ["mAP@0.75", fmt(m["map_75"])]]  # fmt: skip
    blocks = [("h1", f"Report: {run_dir.name} (detection)"), ("table", (["", ""], rows))]
    blocks += training_blocks(run_dir)
    if m["n"]:
        plot_pr_curves(m, ev.classes, run_dir / FILES / "pr_curves.png")
        plot_ap_per_class(m, run_dir / FILES / "ap_per_class.png")
        write_worst(ev, run_dir / FILES / "worst_images.png")
        per_class = format_metrics(m).split("per class:\n", 1)[1]
        blocks += [("h2", "Precision-recall curves"), ("img", (f"{FILES}/pr_curves.png", "PR curves")),
                   ("h2", "AP per class"), ("img", (f"{FILES}/ap_per_class.png", "AP per class")), ("pre", per_class),
                   ("h2", "The worst images"),
                   ("p", f"The images with the most errors (missed objects plus false detections at score ≥"
                         f" {SHOW_CONF}, IoU ≥ 0.5). Green: the true boxes; red: the detections."),
                   ("img", (f"{FILES}/worst_images.png", "worst images"))]  # fmt: skip
    blocks += config_blocks(run_dir)
    write_text(run_dir / "report.md", render_markdown(blocks))
    return write_text(run_dir / "report.html", render_html(blocks, f"cnnkit report: {run_dir.name}"))
