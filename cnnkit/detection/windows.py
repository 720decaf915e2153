"""Sliding windows, slow and convolutional: the notes' first two detectors.

The slow one crops the image at every position (and every scale) and runs a classifier on each crop. The
convolutional one turns the classifier's fully connected layers into convolutions (:func:`fully_convolutional`:
the first ``Linear`` reading a C×h×w map becomes a ``Conv2d`` with an h×w kernel, the later ones 1×1 convolutions,
weights reshaped, not retrained), so one pass over a larger image scores every window at once: a map of class
scores, one per window position, windows ``stride`` pixels apart (the product of the feature stack's strides).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms

from ..errors import CnnkitError

ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Hardswish, nn.Dropout,
               nn.Identity)  # fmt: skip


class FullyConvolutional(nn.Module):
    """A classifier's convolutional stack plus its fully connected head rewritten as convolutions.

    ``forward``: images Tensor[N, C, H, W] (H, W ≥ the classifier's input) -> class logits Tensor[N, K, H', W'],
    one per window of the classifier's input size, ``stride`` pixels apart (H' = (H − window) / stride + 1).
    """

    def __init__(self, features: nn.Module, head: nn.Sequential, window: tuple[int, int], stride: int) -> None:
        super().__init__()
        self.features, self.head, self.window, self.stride = features, head, window, stride

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class _Features(nn.Module):
    """The classifier's convolutional stack: ``features`` of a fixed-input model (its ``forward_features`` would
    refuse another size), else ``forward_features``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model.features(x) if getattr(self.model, "fixed_input", False) else self.model.forward_features(x)


def _head_modules(model: nn.Module, fmap: Tensor) -> list[nn.Module]:
    """The leaf modules ``forward_head`` runs on ``fmap``, in call order."""
    called: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda m, i, o: called.append(m)) for m in model.modules()
             if not list(m.children())]  # fmt: skip
    try:
        model.forward_head(fmap)
    finally:
        for h in hooks:
            h.remove()
    return called


def _convert(modules: list[nn.Module], c: int, h: int, w: int) -> list[nn.Module]:
    """Linear -> Conv2d (the first with an h×w kernel; after global pooling an h×w average first), Flatten
    dropped, element-wise layers kept."""
    out, first = [], True
    for m in modules:
        if isinstance(m, nn.Flatten):
            continue
        if isinstance(m, nn.Linear):
            if first and m.in_features == c * h * w:
                conv = nn.Conv2d(c, m.out_features, (h, w))
                conv.weight.data = m.weight.data.view(m.out_features, c, h, w).clone()
            elif first and m.in_features == c:  # global average pooling before it: average the h×w window
                out.append(nn.AvgPool2d((h, w), stride=1))
                conv = nn.Conv2d(c, m.out_features, 1)
                conv.weight.data = m.weight.data.view(m.out_features, c, 1, 1).clone()
            else:
                conv = nn.Conv2d(m.in_features, m.out_features, 1)
                conv.weight.data = m.weight.data.view(m.out_features, m.in_features, 1, 1).clone()
            conv.bias.data = m.bias.data.clone() if m.bias is not None else torch.zeros(m.out_features)
            out.append(conv)
            first = False
        elif isinstance(m, ELEMENTWISE):
            out.append(m)
        else:
            raise CnnkitError(f"expected a head of Linear and element-wise layers, found {type(m).__name__}; this"
                              " classifier can't be made fully convolutional")  # fmt: skip
    return out


@torch.no_grad()
def fully_convolutional(model: nn.Module) -> FullyConvolutional:
    """Turn a contract classifier whose head is ``Linear`` layers after a fixed-size map (LeNet-5, AlexNet, VGG,
    layer-list specs, …) into a fully convolutional network with the same weights (eval mode).

    Raises:
        CnnkitError: when the head holds other layers, or the converted network does not reproduce the classifier
            on an input of its own size.
    """
    model = model.eval()
    c_in, h_in, w_in = model.default_input
    x = torch.randn(2, c_in, h_in, w_in, generator=torch.Generator().manual_seed(0))
    features = _Features(model)
    fmap = features(x)
    if fmap.ndim != 4:
        raise CnnkitError(f"expected a feature map Tensor[N, C, h, w] before the head, found {tuple(fmap.shape)}")
    _, c, h, w = fmap.shape
    head = nn.Sequential(*_convert(_head_modules(model, fmap), c, h, w))
    fcn = FullyConvolutional(features, head, (h_in, w_in), _stride(features, c_in, h_in, w_in)).eval()
    if not torch.allclose(fcn(x).flatten(1), model(x), atol=1e-4, rtol=1e-4):
        raise CnnkitError(f"expected the convolutional form of {type(model).__name__} to reproduce its outputs, found"
                          " a difference (its head does more than Linear layers); use explicit windows")  # fmt: skip
    return fcn


def _stride(features: nn.Module, c: int, h: int, w: int, extra: int = 64) -> int:
    """Pixels between neighbouring windows: how far the map moves when the input grows by ``extra`` pixels."""
    a = features(torch.zeros(1, c, h, w)).shape[-1]
    b = features(torch.zeros(1, c, h, w + extra)).shape[-1]
    return max(1, round(extra / max(b - a, 1)))


@dataclass
class WindowResult:
    """What a sliding-window pass found: boxes Tensor[D, 4] xyxy in image pixels, scores [D], labels [D]; how many
    windows were scored and how long it took."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    windows: int
    seconds: float


def window_crops(image: Tensor, window: int, stride: int) -> tuple[Tensor, Tensor]:
    """Every ``window``×``window`` crop of image Tensor[C, H, W], ``stride`` apart -> (crops Tensor[M, C, window,
    window], their boxes Tensor[M, 4] xyxy), rows first."""
    patches = image.unfold(1, window, stride).unfold(2, window, stride)  # [C, h', w', window, window]
    rows, cols = patches.shape[1:3]
    crops = patches.permute(1, 2, 0, 3, 4).reshape(rows * cols, image.shape[0], window, window)
    y, x = torch.meshgrid(torch.arange(rows) * stride, torch.arange(cols) * stride, indexing="ij")
    boxes = torch.stack([x, y, x + window, y + window], -1).reshape(-1, 4).float()
    return crops, boxes


@torch.no_grad()
def sliding_windows(model: nn.Module, image: Tensor, *, window: int, stride: int, scales: tuple[float, ...] = (1.0,),
                    threshold: float = 0.5, iou: float = 0.3, background: int | None = None,
                    convolutional: bool = False, batch_size: int = 512) -> WindowResult:  # fmt: skip
    """Detect with a classifier by windows: at each scale the image (normalised float Tensor[C, H, W]) is resized so
    a ``window``-pixel window matches the classifier's input; windows whose best class (not ``background``) scores
    ≥ ``threshold`` are kept, then class-wise NMS. ``stride``: pixels between windows in each scale's resized
    image. ``convolutional``: ``model`` is a :class:`FullyConvolutional` and its own stride replaces ``stride``
    (with ``stride`` equal to it, both score the same windows at every scale)."""
    t0 = time.perf_counter()
    side = model.window[0] if convolutional else model.default_input[1]
    boxes, scores, labels, count = [], [], [], 0
    for scale in scales:
        f = scale * side / window
        size = (round(image.shape[1] * f), round(image.shape[2] * f))
        if min(size) < side:
            continue
        img = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
        if convolutional:
            logits = model(img[None])[0]  # [K, h', w']
            k, rows, cols = logits.shape
            logits = logits.permute(1, 2, 0).reshape(-1, k)
            step = model.stride
            y, x = torch.meshgrid(torch.arange(rows) * step, torch.arange(cols) * step, indexing="ij")
            b = torch.stack([x, y, x + side, y + side], -1).reshape(-1, 4).float()
        else:
            crops, b = window_crops(img, side, stride)  # in the resized image, as the convolutional form steps
            logits = torch.cat([model(c) for c in crops.split(batch_size)])
        count += len(b)
        p = logits.float().softmax(1)
        if background is not None:
            p[:, background] = 0
        s, k = p.max(1)
        keep = s >= threshold
        boxes.append(b[keep] / f)
        scores.append(s[keep])
        labels.append(k[keep])
    b, s, k = (torch.cat(v) if v else torch.zeros(0) for v in (boxes, scores, labels))
    keep = batched_nms(b.reshape(-1, 4), s, k, iou)
    return WindowResult(b.reshape(-1, 4)[keep], s[keep], k[keep], count, time.perf_counter() - t0)


def window_detect(run: str, image: str, *, window: int = 28, stride: int = 4, scales: tuple[float, ...] = (1.0,),
                  threshold: float = 0.9, iou: float = 0.3, background: str | None = None,
                  convolutional: bool = False) -> dict:  # fmt: skip
    """A classification run as a window detector on one image file -> ``{"windows", "seconds", "objects": [{"label",
    "score", "box"}]}`` (boxes xyxy in the image's pixels)."""
    from ..data.images import load_image
    from ..predict import Predictor

    predictor = Predictor.from_run(run)
    classes = predictor.classes
    names = [c.lower() for c in classes]
    bg = background if background is not None else ("background" if "background" in names else None)
    if bg is not None and bg.lower() not in names:
        raise CnnkitError(f"expected --background among the run's classes {classes}, found {bg!r}")
    pixels = predictor.normalize(load_image(image, predictor.in_chans, None)[None])[0]
    model = fully_convolutional(predictor.model) if convolutional else predictor.model
    found = sliding_windows(model, pixels, window=window, stride=stride, scales=scales, threshold=threshold, iou=iou,
                            background=names.index(bg.lower()) if bg else None,
                            convolutional=convolutional)  # fmt: skip
    objects = [{"label": classes[k], "score": round(float(s), 4), "box": [round(v, 1) for v in b.tolist()]}
               for b, s, k in zip(found.boxes, found.scores, found.labels.tolist())]  # fmt: skip
    return {"windows": found.windows, "seconds": round(found.seconds, 4), "objects": objects}
