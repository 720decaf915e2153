"""After a localisation run: predictions with boxes (``cnnkit.load``, ``cnnkit predict``), ``cnnkit evaluate``
(class accuracy, mean IoU, localisation accuracy, per class) and the report (IoU histogram, best and worst
examples drawn with true and predicted boxes)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..data.boxes import BoxImages, pixel_boxes
from ..data.splits import describe_split
from ..drawing import draw_boxes, image_grid
from ..engine.checkpoint import load_weights
from ..evaluate.report import FILES, config_blocks, render_html, render_markdown, training_blocks
from ..evaluate.tables import fmt, text_table
from ..io import atomic_write, save_figure, write_text
from ..predict import ImageLike, Predictor
from ..runcard import model_path, read_card
from .common import evaluate_each, run_split, split_metrics
from .localize import IOU_HIT, Localize, localisation_figures, predict_dataset


@dataclass
class BoxPrediction:
    """The class of the object in one image, its probability, the top classes, and its box ``xyxy`` in the
    image's own pixels."""

    label: str
    index: int
    probability: float
    box: tuple[float, float, float, float]
    topk: list[tuple[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        x1, y1, x2, y2 = self.box
        return f"{self.label} {self.probability:.1%} at x1 {x1:.0f} y1 {y1:.0f} x2 {x2:.0f} y2 {y2:.0f}"


class BoxPredictor(Predictor):
    """A trained localiser with its classes and preprocessing (``cnnkit.load`` of a localize run)."""

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str = "cpu", weights: str = "model.safetensors") -> BoxPredictor:
        run_dir = Path(run_dir)
        card = read_card(run_dir)
        model = Localize().build_from_card(card, model_path(card, run_dir))
        load_weights(model, run_dir / weights)
        return cls(model, card, device)

    @torch.no_grad()
    def outputs(self, images: list[ImageLike], batch_size: int = 64) -> tuple[Tensor, Tensor]:
        """images -> (class probabilities Tensor[N, K], boxes Tensor[N, 4] normalised cxcywh)."""
        probs, boxes = [], []
        model, normalize = self.inference_model()
        for b in self.batches(images, batch_size):
            out = model(normalize(b))
            probs.append(torch.softmax(out.logits.float(), 1).cpu())
            boxes.append(out.boxes.float().cpu())
        return torch.cat(probs), torch.cat(boxes)

    def predict(self, images: Iterable[ImageLike], topk: int = 1) -> list[BoxPrediction]:
        """The class and box of each image, the box in the image's own pixels."""
        images = list(images)
        probs, boxes = self.outputs(images)
        k = max(1, min(topk, len(self.classes)))
        p, idx = probs.topk(k, dim=1)
        out = []
        for im, q, i, box in zip(images, p.tolist(), idx.tolist(), boxes):
            xyxy = pixel_boxes(box[None], original_size(im))[0].tolist()
            top = [(self.classes[j], float(v)) for j, v in zip(i, q)]
            out.append(BoxPrediction(self.classes[i[0]], int(i[0]), float(q[0]), tuple(xyxy), top))
        return out

    def draw(self, images: list[ImageLike], preds: list[BoxPrediction], out_dir: str | Path) -> list[Path]:
        """Write each image with its predicted box and label drawn, as ``OUT/<name>.png``."""
        written = []
        for n, (im, p) in enumerate(zip(images, preds)):
            pixels = full_image(im)
            drawn = draw_boxes(pixels, torch.tensor([p.box]), [f"{p.label} {p.probability:.0%}"], ["lime"])
            name = Path(im).stem if isinstance(im, (str, Path)) else f"image_{n}"
            written.append(save_png(drawn, Path(out_dir) / f"{name}_box.png"))
        return written


def original_size(image: ImageLike) -> tuple[int, int]:
    """(H, W) of an image as given (a path's header, an array's or tensor's shape)."""
    if isinstance(image, (str, Path)):
        from ..data.labels import image_size

        w, h = image_size(image)
        return h, w
    if isinstance(image, Tensor):
        return tuple(image.shape[-2:])
    if isinstance(image, np.ndarray):
        return image.shape[:2]
    return image.size[1], image.size[0]  # PIL


def full_image(image: ImageLike) -> Tensor:
    """The image at its own size as uint8 RGB Tensor[3, H, W]."""
    from ..data.images import ONE_IMAGE, load_image, pil_to_tensor

    if isinstance(image, (str, Path)):
        return load_image(image, 3, None, ONE_IMAGE)
    if isinstance(image, Tensor):
        return image.expand(3, -1, -1) if image.shape[0] == 1 else image
    from PIL import Image

    return pil_to_tensor(Image.fromarray(np.asarray(image, dtype=np.uint8)) if isinstance(image, np.ndarray)
                         else image, 3, None)  # fmt: skip


def save_png(image: Tensor, path: Path) -> Path:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(buf, format="PNG")
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(buf.getvalue()))


# ---- evaluation ------------------------------------------------------------------------------------------------
@dataclass
class LocEvaluation:
    """A run's predictions on one split: logits Tensor[N, K], boxes Tensor[N, 4], and the examples."""

    run: Path
    split: str
    source: str
    classes: list[str]
    data: BoxImages
    logits: Tensor
    boxes: Tensor

    def figures(self) -> dict[str, Tensor]:
        return localisation_figures(self.logits, self.boxes, self.data.labels, self.data.boxes)

    def metrics(self) -> dict[str, Any]:
        fig, labels = self.figures(), self.data.labels
        per_class = {}
        for k, name in enumerate(self.classes):
            sel = labels == k
            n = int(sel.sum())
            per_class[name] = {"n": n, **({key: float(v[sel].float().mean()) for key, v in
                                          (("accuracy", fig["correct"]), ("mean_iou", fig["iou"]),
                                           ("loc_accuracy", fig["hit"]))} if n else {})}  # fmt: skip
        return {"run": str(self.run), "task": "localize", "data": self.source, "split": self.split,
                "n": len(labels), "accuracy": float(fig["correct"].float().mean()),
                "mean_iou": float(fig["iou"].mean()), "loc_accuracy": float(fig["hit"].float().mean()),
                "iou_hit": IOU_HIT, "per_class": per_class}  # fmt: skip


def evaluate_run(run: str | Path, data: str | None = None, split: str = "test", data_dir: str | None = None,
                 device: str = "cpu") -> LocEvaluation:  # fmt: skip
    """Predict the ``split`` of the run's own data (checked against the run's record), or of ``data``."""
    card, splits, ds, name = run_split(Localize(), run, split, data)
    predictor = BoxPredictor.from_run(run, device)
    model, normalize = predictor.inference_model()
    out = predict_dataset(model, ds, normalize)
    return LocEvaluation(Path(run), name, splits.source, card.classes, ds, out.logits, out.boxes)


def format_metrics(m: dict[str, Any]) -> str:
    lines = [f"{describe_split(m['split'], m['data'])}: {m['n']} images, {len(m['per_class'])} classes",
             f"  class accuracy {fmt(m['accuracy'])}   mean IoU {fmt(m['mean_iou'])}   localisation accuracy"
             f" (class right and IoU ≥ {m['iou_hit']}) {fmt(m['loc_accuracy'])}", "per class:"]  # fmt: skip
    rows = [[name, str(c["n"]), fmt(c.get("accuracy")), fmt(c.get("mean_iou")), fmt(c.get("loc_accuracy"))]
            for name, c in m["per_class"].items()]  # fmt: skip
    lines.append(text_table((["class", "images", "accuracy", "mean IoU", "loc. accuracy"], rows)))
    return "\n".join(lines)


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
    """``cnnkit evaluate`` for localisation runs, one at a time (no ensembles or TTA for boxes yet)."""

    def one(run: str) -> tuple[dict[str, Any], list[str]]:
        ev = evaluate_run(run, data, split, data_dir, device)
        m = split_metrics(ev)
        lines = [format_metrics(m)]
        if predictions:
            lines.append(f"  predictions saved to {save_predictions(ev, predictions)}")
        if gallery:
            lines.append(f"  best and worst boxes saved to {write_gallery(ev, Path(gallery))}")
        return m, lines

    opts = {"ensemble": ensemble, "tta": tta, "many_files": bool(predictions or gallery), "data": data}
    return evaluate_each("localize", runs, one, **opts)


def save_predictions(ev: LocEvaluation, path: str | Path) -> Path:
    """One CSV row per image: the file, true and predicted class, probability, both boxes (pixels), IoU."""
    fig, probs = ev.figures(), torch.softmax(ev.logits, 1)
    size = tuple(ev.data.images.shape[-2:])
    true_px, pred_px = pixel_boxes(ev.data.boxes, size), pixel_boxes(ev.boxes, size)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["image", "true", "predicted", "probability", "true_x1", "true_y1", "true_x2", "true_y2",
                "pred_x1", "pred_y1", "pred_x2", "pred_y2", "iou"])  # fmt: skip
    for i, image in enumerate(ev.data.ids):
        k = int(probs[i].argmax())
        w.writerow([image, ev.classes[int(ev.data.labels[i])], ev.classes[k], f"{float(probs[i, k]):.4f}",
                    *(f"{v:.1f}" for v in true_px[i].tolist()), *(f"{v:.1f}" for v in pred_px[i].tolist()),
                    f"{float(fig['iou'][i]):.4f}"])  # fmt: skip
    return write_text(path, buf.getvalue())


def write_gallery(ev: LocEvaluation, path: Path, count: int = 8) -> Path:
    """The ``count`` best and worst examples by IoU, true box in green and predicted box in red (or blue when
    the class is right), each with its labels."""
    fig = ev.figures()
    order = fig["iou"].argsort()
    picks = [*order.flip(0)[:count].tolist(), *order[:count].tolist()]
    size = tuple(ev.data.images.shape[-2:])
    tiles = []
    for i in picks:
        img = ev.data.images[i].expand(3, -1, -1)
        boxes = torch.cat([pixel_boxes(ev.data.boxes[i : i + 1], size), pixel_boxes(ev.boxes[i : i + 1], size)])
        pred = ev.classes[int(ev.logits[i].argmax())]
        colour = "blue" if bool(fig["correct"][i]) else "red"
        tiles.append(draw_boxes(img, boxes, [ev.classes[int(ev.data.labels[i])], f"{pred} {fig['iou'][i]:.2f}"],
                                ["lime", colour], scale=3))  # fmt: skip
    return save_png(image_grid(tiles, cols=count), path)


def plot_iou_histogram(ev: LocEvaluation, path: Path) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.hist(ev.figures()["iou"].numpy(), bins=20, range=(0, 1), color="tab:blue", edgecolor="white")
    ax.axvline(IOU_HIT, color="tab:red", linestyle="--", label=f"IoU {IOU_HIT}: a hit when the class is right")
    ax.set_xlabel("IoU of predicted and true box")
    ax.set_ylabel("images")
    ax.set_title(f"IoU, {describe_split(ev.split)} ({len(ev.data)} images)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def write_report(run_dir: str | Path, *, data: str | None = None, split: str = "test", data_dir: str | None = None
                 ) -> Path:  # fmt: skip
    """``report.html`` and ``report.md``: overview, curves, IoU histogram, per class, best and worst examples."""
    run_dir = Path(run_dir)
    ev = evaluate_run(run_dir, data, split, data_dir)
    m = ev.metrics()
    card = read_card(run_dir)
    rows = [["model", f"{card.model} + box head"], ["trained on", card.data], ["classes", ", ".join(card.classes)],
            [f"{split} images", str(m["n"])], ["class accuracy", fmt(m["accuracy"])], ["mean IoU", fmt(m["mean_iou"])],
            [f"localisation accuracy (IoU ≥ {IOU_HIT})", fmt(m["loc_accuracy"])]]  # fmt: skip
    blocks = [("h1", f"Report: {run_dir.name} (classification + localisation)"), ("table", (["", ""], rows))]
    blocks += training_blocks(run_dir)
    if m["n"]:
        plot_iou_histogram(ev, run_dir / FILES / "iou_histogram.png")
        write_gallery(ev, run_dir / FILES / "best_worst_boxes.png")
        per_class = format_metrics(m).split("per class:\n", 1)[1]
        blocks += [("h2", "IoU of the predicted boxes"), ("img", (f"{FILES}/iou_histogram.png", "IoU histogram")),
                   ("h2", "Per class"), ("pre", per_class),
                   ("h2", "Best and worst boxes"),
                   ("p", "Top row: the best boxes by IoU; bottom row: the worst. Green: the true box; blue: the"
                         " predicted box with the right class, red: with the wrong class."),
                   ("img", (f"{FILES}/best_worst_boxes.png", "best and worst boxes"))]  # fmt: skip
    blocks += config_blocks(run_dir)
    write_text(run_dir / "report.md", render_markdown(blocks))
    return write_text(run_dir / "report.html", render_html(blocks, f"cnnkit report: {run_dir.name}"))
