"""Prediction from a run directory (``cnnkit.load(run)``, ``cnnkit predict RUN IMAGE…``) or from published
weights alone (``cnnkit predict --model efficientnet_lite0 --pretrained IMAGE…``: the 1000 ImageNet classes).

The preprocessing stored in ``model.json`` (colour mode, resize, mean/std) is applied to every image, so
a prediction sees exactly what training saw. Published weights bring their own: shorter side resized, centre
crop, their mean/std.
"""

from __future__ import annotations

import io
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch import Tensor, nn

from .data.content import fit_content
from .data.images import ONE_IMAGE, BadImageError, contiguous, pixels, read_image, resize, to_mode
from .engine.checkpoint import load_weights
from .errors import CnnkitError
from .models import create_model
from .runcard import InputSpec, RunCard, model_path, read_card
from .runtime import Normalize, inference_copy, resolve_device

ImageLike = str | Path | Image.Image | np.ndarray | Tensor


@dataclass
class Prediction:
    """The top class of one image and the ``k`` most probable classes."""

    label: str
    index: int
    probability: float
    topk: list[tuple[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """``"Sneaker 97.1%, Sandal 2.5%"``."""
        return ", ".join(f"{name} {prob:.1%}" for name, prob in self.topk)


class Predictor:
    """A trained model with its classes and preprocessing. Build with :meth:`from_run` / ``cnnkit.load``."""

    def __init__(self, model: nn.Module, card: RunCard, device: str = "cpu") -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.card = card
        self.classes: list[str] = list(card.classes)
        pre = card.preprocessing
        self.in_chans = card.input.channels
        self.crop = pre.get("center_crop")  # published weights: resize the shorter side, then centre-crop
        self.size = tuple(self.crop or pre["resize"])
        self.content = pre.get("content")  # grey datasets of centred objects: user images are brought to their look
        self.normalize = Normalize(pre["mean"], pre["std"], self.device, channels_last=False)
        self._fast: tuple[nn.Module, nn.Module, Normalize] | None = None  # (made from, inference copy, its Normalize)
        self._hook: tuple[nn.Module, Any] | None = None  # (model, its load_state_dict hook that drops the copy)

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str = "cpu", weights: str = "model.safetensors") -> Predictor:
        """A classification run's predictor (``cnnkit.load`` picks the predictor of the run's task).

        Raises:
            CnnkitError: a run of another task (its weights are not a classifier's).
        """
        run_dir = Path(run_dir)
        card = read_card(run_dir)
        if card.task != "classify":
            raise CnnkitError(
                f"expected a classify run in {str(run_dir)!r}, found a {card.task} run; this needs a classifier"
                " (`cnnkit predict`, `evaluate` and `export` take a run of any task)"
            )
        model = create_model(model_path(card, run_dir), num_classes=card.num_classes, in_chans=card.input.channels,
                             **card.model_kwargs)  # fmt: skip
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
        card = RunCard(
            model=name,
            num_classes=model.num_classes,
            classes=classes,
            input=InputSpec(c, h, w),
            preprocessing=pre,
            pretrained=entry.card() if entry is not None else {"weights": weights},
        )
        return cls(model, card, device)

    def _resize_crop(self, image: Tensor) -> Tensor:
        """Published weights' preprocessing: uint8 Tensor[C, H, W] -> its shorter side resized to ``resize_shorter``
        (the longer side rounded as Pillow's evaluation scripts do), then the centre crop Tensor[C, *center_crop]."""
        pre = self.card.preprocessing
        h, w = image.shape[-2:]
        scale = pre["resize_shorter"] / min(w, h)
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        return TF.center_crop(resize(image, size, pre.get("interpolation", "bilinear")), list(self.crop))

    def _pixels(self, image: Image.Image | np.ndarray | Tensor) -> Tensor:
        """One decoded image -> uint8 Tensor[in_chans, H, W] in any memory layout (a view of ``image`` when it is a
        uint8 array or tensor with the model's channels, or one grey channel for an RGB model, as Pillow repeats it);
        anything else goes through Pillow's :func:`to_mode`, as training did."""
        if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim in (2, 3):
            a = image if image.flags.writeable else image.copy()  # torch warns about read-only arrays
            image = torch.from_numpy(a)[None] if a.ndim == 2 else torch.from_numpy(a).permute(2, 0, 1)
        usable = (1, self.in_chans)  # channel counts taken as they are
        if isinstance(image, Tensor) and image.dtype == torch.uint8 and image.ndim == 3 and len(image) in usable:
            return image.expand(self.in_chans, -1, -1)
        if isinstance(image, Tensor):
            image = image.numpy().transpose(1, 2, 0).squeeze() if image.ndim == 3 else image.numpy()
        if isinstance(image, np.ndarray):
            image = Image.fromarray(np.asarray(image, dtype=np.uint8))
        return pixels(to_mode(image, self.in_chans))

    @property
    def decode_side(self) -> int:
        """The shorter side images are resized to: a JPEG file is decoded at the smallest of 1/1 … 1/8 scale that
        still covers it (:func:`~cnnkit.data.images.read_image`)."""
        return self.card.preprocessing.get("resize_shorter") or min(self.size)

    def to_tensor(self, image: ImageLike) -> Tensor:
        """One image (path, Pillow image, HxW[xC] uint8 array, or uint8 Tensor[C, H, W]) -> contiguous uint8
        Tensor[C, H, W], resized (and centre-cropped for published weights) with :func:`~cnnkit.data.images.resize`
        (within one grey level of Pillow's resize). A grey run whose card describes its images' look first brings
        the image to it (:func:`~cnnkit.data.content.fit_content`: negated, cut to the object and centred)."""
        path = image if isinstance(image, (str, Path)) else None
        if path is not None:
            image = read_image(path, ONE_IMAGE, shorter=self.decode_side)
        try:
            t = self._pixels(image)
        except (ValueError, OSError) as e:  # pixels that can't be converted (NaN floats, a broken palette)
            raise BadImageError(path or "the image given", str(e) or type(e).__name__, ONE_IMAGE) from None
        if self.content and len(t) == 1:
            t = fit_content(t, self.content, self.size)
        out = contiguous(self._resize_crop(t) if self.crop else resize(t, self.size))
        borrowed = isinstance(image, (np.ndarray, Tensor))  # a Pillow image's pixels are a copy already
        if borrowed and out.untyped_storage().data_ptr() == t.untyped_storage().data_ptr():
            return out.clone()  # never the caller's own memory
        return out

    def batches(self, images: Iterable[ImageLike], batch_size: int = 64) -> Iterator[Tensor]:
        """Decoded uint8 batches Tensor[B, C, H, W], ``batch_size`` images at a time (memory stays bounded). No
        autograd context of its own: nothing here has a gradient, and a no_grad generator re-enters it per batch."""
        chunk: list[Tensor] = []
        for im in images:
            chunk.append(self.to_tensor(im))
            if len(chunk) == batch_size:
                yield torch.stack(chunk)
                chunk = []
        if chunk:
            yield torch.stack(chunk)

    def inference_model(self) -> tuple[nn.Module, Normalize]:
        """(the module predictions run, the :class:`~cnnkit.runtime.Normalize` its inputs need): for a model with
        convolutions, its :func:`~cnnkit.runtime.inference_copy` (BatchNorm folded, channels_last: one more copy of
        the weights), made on first use and again when ``self.model`` is replaced or loads a state dict; else
        ``self.model`` itself (ONNX Runtime's module). ``self.model`` stays the model as trained (``explain`` and
        ``export`` use it)."""
        if self._fast is None or self._fast[0] is not self.model:
            if any(isinstance(m, nn.Conv2d) for m in self.model.modules()):
                pre = self.card.preprocessing
                normalize = Normalize(pre["mean"], pre["std"], self.device, channels_last=True)
                example = torch.zeros(1, self.in_chans, *self.size, device=self.device)
                self._fast = (self.model, inference_copy(self.model, example), normalize)
                self._forget_copy_on_load()
            else:
                self._fast = (self.model, self.model, self.normalize)
        return self._fast[1], self._fast[2]

    def _forget_copy_on_load(self) -> None:
        """Have ``self.model.load_state_dict`` drop the inference copy (it is made again on the next call)."""
        if self._hook is not None and self._hook[0] is self.model:
            return
        if self._hook is not None:
            self._hook[1].remove()
        ref = weakref.ref(self)

        def forget(_module: nn.Module, _keys: Any) -> None:
            if (p := ref()) is not None:
                p._fast = None

        self._hook = (self.model, self.model.register_load_state_dict_post_hook(forget))

    @torch.no_grad()  # the model call builds no autograd graph
    def predict_proba(self, images: Iterable[ImageLike], batch_size: int = 64) -> Tensor:
        """images -> class probabilities Tensor[N, num_classes], decoded and run ``batch_size`` at a time (on
        :meth:`inference_model`)."""
        model, normalize = self.inference_model()
        out = [torch.softmax(model(normalize(b)).float(), 1).cpu() for b in self.batches(images, batch_size)]
        return torch.cat(out) if out else torch.zeros(0, len(self.classes))

    def predict(self, images: Iterable[ImageLike], topk: int = 1) -> list[Prediction]:
        """Top-``topk`` classes of each image, most probable first."""
        probs = self.predict_proba(images)
        k = max(1, min(topk, len(self.classes)))
        p, idx = probs.topk(k, dim=1)
        return [
            Prediction(self.classes[i[0]], int(i[0]), float(q[0]), [(self.classes[j], float(v)) for j, v in zip(i, q)])
            for q, i in zip(p.tolist(), idx.tolist())
        ]

    def draw(self, images: list[ImageLike], preds: list[Prediction], out_dir: str | Path) -> list[Path]:
        """Write each image with its predicted class written on it, as ``OUT/<name>_label.png``."""
        from .drawing import caption
        from .io import atomic_write

        written = []
        for n, (im, p) in enumerate(zip(images, preds)):
            t = self.to_tensor(im)
            t = t.expand(3, -1, -1) if t.shape[0] == 1 else t
            if min(t.shape[-2:]) < 96:  # small images: enlarge so the caption can be read
                t = torch.nn.functional.interpolate(t[None].float(), scale_factor=96 / min(t.shape[-2:]))[0].byte()
            drawn = caption(t, f"{p.label} {p.probability:.0%}").permute(1, 2, 0).numpy()
            name = Path(im).stem if isinstance(im, (str, Path)) else f"image_{n}"
            buf = io.BytesIO()
            Image.fromarray(drawn).save(buf, format="PNG")
            written.append(
                atomic_write(
                    Path(out_dir) / f"{name}_label.png", lambda tmp, b=buf: Path(tmp).write_bytes(b.getvalue())
                )
            )
        return written
