"""Prediction from a run directory (``cnnkit.load(run)``, ``cnnkit predict RUN IMAGE…``) or from published
weights alone (``cnnkit predict --model efficientnet_lite0 --pretrained IMAGE…``: the 1000 ImageNet classes).

The preprocessing stored in ``model.json`` (colour mode, resize, mean/std) is applied to every image, so
a prediction sees exactly what training saw. Published weights bring their own: shorter side resized, centre
crop, their mean/std.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch import Tensor, nn
from torchvision.transforms import InterpolationMode

from .data.images import load_image, pil_to_tensor
from .engine.checkpoint import load_weights, read_json
from .engine.runtime import Normalize, resolve_device
from .errors import CnnkitError
from .models import create_model

ImageLike = str | Path | Image.Image | np.ndarray | Tensor


@dataclass
class Prediction:
    """The top class of one image and the ``k`` most probable classes."""

    label: str
    index: int
    probability: float
    topk: list[tuple[str, float]]


class Predictor:
    """A trained model with its classes and preprocessing. Build with :meth:`from_run` / ``cnnkit.load``."""

    def __init__(self, model: nn.Module, card: dict[str, Any], device: str = "cpu") -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.card = card
        self.classes: list[str] = list(card["classes"])
        pre = card["preprocessing"]
        self.in_chans = card["input"]["channels"]
        self.crop = pre.get("center_crop")  # published weights: resize the shorter side, then centre-crop
        self.size = tuple(self.crop or pre["resize"])
        self.normalize = Normalize(pre["mean"], pre["std"], self.device, channels_last=False)

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str = "cpu", weights: str = "model.safetensors") -> Predictor:
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise CnnkitError(
                f"expected a run directory, found nothing at {str(run_dir)!r}; pass the folder `cnnkit train` wrote"
            )
        card = read_json(run_dir / "model.json")
        if card["model"] == "model_spec.yaml":  # a layer-list spec saved with the run
            card = {**card, "model": str(run_dir / "model_spec.yaml")}
        model = create_model(
            card["model"],
            num_classes=card["num_classes"],
            in_chans=card["input"]["channels"],
            **card.get("model_kwargs", {}),
        )
        load_weights(model, run_dir / weights)
        return cls(model, card, device)

    @classmethod
    def from_pretrained(cls, name: str, weights: str | None = None, device: str = "cpu") -> Predictor:
        """The model ``name`` with its published weights (or the state dict at ``weights``), no run directory."""
        model = create_model(name, pretrained=weights is None, weights=weights)
        entry = getattr(model, "pretrained_cfg", None)
        c, h, w = model.default_input
        if entry is None:  # own weights outside the table: class indices as names, the model's input size
            classes = [str(i) for i in range(model.num_classes)]
            pre = {"mode": "L" if c == 1 else "RGB", "resize": [h, w], "scale": 255.0}
            pre |= {"mean": list(model.mean), "std": list(model.std)}
        else:
            classes, pre = entry.classes, entry.preprocessing.card()
            h = w = entry.preprocessing.crop
        card = {"model": name, "num_classes": model.num_classes, "classes": classes, "preprocessing": pre,
                "input": {"channels": c, "height": h, "width": w}, "weights": weights or entry.card()}  # fmt: skip
        return cls(model, card, device)

    def _resize_crop(self, image: Tensor) -> Tensor:
        """uint8 Tensor[C, H, W] -> its shorter side resized, then the centre crop: Tensor[C, *center_crop]."""
        pre = self.card["preprocessing"]
        mode = InterpolationMode(pre.get("interpolation", "bilinear"))
        image = TF.resize(image, pre["resize_shorter"], interpolation=mode, antialias=True)
        return TF.center_crop(image, list(self.crop))

    def to_tensor(self, image: ImageLike) -> Tensor:
        """One image (path, Pillow image, HxW[xC] uint8 array, or uint8 Tensor[C, H, W]) -> uint8 Tensor[C, H, W]."""
        size = None if self.crop else self.size
        if isinstance(image, (str, Path)):
            t = load_image(image, self.in_chans, size)
        else:
            if isinstance(image, Tensor):
                image = image.numpy().transpose(1, 2, 0).squeeze() if image.ndim == 3 else image.numpy()
            if isinstance(image, np.ndarray):
                image = Image.fromarray(np.asarray(image, dtype=np.uint8))
            t = pil_to_tensor(image, self.in_chans, size)
        return self._resize_crop(t) if self.crop else t

    @torch.no_grad()
    def predict_proba(self, images: Iterable[ImageLike], batch_size: int = 256) -> Tensor:
        """images -> class probabilities Tensor[N, num_classes]."""
        x = torch.stack([self.to_tensor(im) for im in images])
        out = [torch.softmax(self.model(self.normalize(b)).float(), 1).cpu() for b in x.split(batch_size)]
        return torch.cat(out)

    def predict(self, images: Iterable[ImageLike], topk: int = 1) -> list[Prediction]:
        """Top-``topk`` classes of each image, most probable first."""
        probs = self.predict_proba(images)
        k = max(1, min(topk, len(self.classes)))
        p, idx = probs.topk(k, dim=1)
        return [
            Prediction(self.classes[i[0]], int(i[0]), float(q[0]), [(self.classes[j], float(v)) for j, v in zip(i, q)])
            for q, i in zip(p.tolist(), idx.tolist())
        ]


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify image files with a trained run, or with published weights")
    p.add_argument(
        "paths", nargs="+", metavar="[RUN] IMAGE", help="a run directory then image files (no run with --model)"
    )
    p.add_argument("--model", help="a registered model, used with --pretrained or --weights instead of a run")
    p.add_argument("--pretrained", action="store_true", help="the model's published ImageNet weights (1000 classes)")
    p.add_argument("--weights", metavar="PATH", help="a local state dict (.safetensors/.pt/.pth) for --model")
    p.add_argument("--topk", type=int, default=3, help="how many classes to show per image (default 3)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_predict)


def predictor_for(args: argparse.Namespace) -> tuple[Predictor, list[str]]:
    """The predictor the arguments ask for, and the image paths."""
    if args.model is None:
        if args.pretrained or args.weights:
            raise CnnkitError(
                "expected --model NAME with --pretrained/--weights, found none; e.g. --model efficientnet_lite0"
            )
        if len(args.paths) < 2:
            raise CnnkitError(
                f"expected a run directory and image files, found only {args.paths[0]!r}; or pass --model"
            )
        return Predictor.from_run(args.paths[0]), args.paths[1:]
    if not (args.pretrained or args.weights):
        raise CnnkitError(f"expected --pretrained or --weights PATH with --model {args.model}, found neither")
    return Predictor.from_pretrained(args.model, args.weights), args.paths


def run_predict(args: argparse.Namespace) -> int:
    predictor, images = predictor_for(args)
    preds = predictor.predict(images, topk=args.topk)
    if args.json:
        print(json.dumps([{"image": str(f), **asdict(p)} for f, p in zip(images, preds)], indent=2))
        return 0
    for f, p in zip(images, preds):
        print(f"{f}: " + ", ".join(f"{name} {prob:.1%}" for name, prob in p.topk))
    return 0
