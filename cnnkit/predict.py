"""Prediction from a run directory: ``cnnkit.load(run)`` and ``cnnkit predict RUN IMAGE…``.

The preprocessing stored in ``model.json`` (colour mode, resize, mean/std) is applied to every image, so
a prediction sees exactly what training saw.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

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
        self.size = tuple(pre["resize"])
        self.normalize = Normalize(pre["mean"], pre["std"], self.device, channels_last=False)

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str = "cpu", weights: str = "model.safetensors") -> Predictor:
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise CnnkitError(
                f"expected a run directory, found nothing at {str(run_dir)!r}; pass the folder `cnnkit train` wrote"
            )
        card = read_json(run_dir / "model.json")
        model = create_model(
            card["model"],
            num_classes=card["num_classes"],
            in_chans=card["input"]["channels"],
            **card.get("model_kwargs", {}),
        )
        load_weights(model, run_dir / weights)
        return cls(model, card, device)

    def to_tensor(self, image: ImageLike) -> Tensor:
        """One image (path, Pillow image, HxW[xC] uint8 array, or uint8 Tensor[C, H, W]) -> uint8 Tensor[C, H, W]."""
        if isinstance(image, (str, Path)):
            return load_image(image, self.in_chans, self.size)
        if isinstance(image, Tensor):
            image = image.numpy().transpose(1, 2, 0).squeeze() if image.ndim == 3 else image.numpy()
        if isinstance(image, np.ndarray):
            image = Image.fromarray(np.asarray(image, dtype=np.uint8))
        return pil_to_tensor(image, self.in_chans, self.size)

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
    p = sub.add_parser("predict", help="classify image files with a trained run")
    p.add_argument("run", help="run directory written by `cnnkit train`")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--topk", type=int, default=3, help="how many classes to show per image (default 3)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    predictor = Predictor.from_run(args.run)
    preds = predictor.predict(args.images, topk=args.topk)
    if args.json:
        print(json.dumps([{"image": str(f), **asdict(p)} for f, p in zip(args.images, preds)], indent=2))
        return 0
    for f, p in zip(args.images, preds):
        print(f"{f}: " + ", ".join(f"{name} {prob:.1%}" for name, prob in p.topk))
    return 0


def format_predictions(files: Sequence[str], preds: Sequence[Prediction]) -> str:
    return "\n".join(f"{f}: {p.label} ({p.probability:.1%})" for f, p in zip(files, preds))
