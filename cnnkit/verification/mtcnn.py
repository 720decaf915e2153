"""MTCNN face detection (Zhang, Zhang, Li & Qiao 2016): a cascade of three small networks.

P-Net slides over an image pyramid as a fully convolutional network and proposes face windows; R-Net rejects
most of them and refines the boxes on 24×24 crops; O-Net refines again on 48×48 crops and gives 5 landmarks
(the eye, the other eye, the nose, the two mouth corners, as they appear from left to right in the image).
Between stages: NMS (``torchvision.ops.nms``), the networks' box regression and squaring of the boxes.

The weights are the published ones, converted from Caffe, as they ship in the PyPI package ``facenet-pytorch``
(MIT; ``facenet_pytorch/data/{pnet,rnet,onet}.pt``, plain state dicts). That package pins an old torch: it is
installed with ``pip install --no-deps facenet-pytorch`` and never imported; cnnkit finds its folder with
``importlib.util.find_spec`` and reads only the weight files (``torch.load(weights_only=True)``) into the modules
below, whose layer names match the state-dict keys.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import nms

from ..errors import CnnkitError

INSTALL = "install them with `pip install --no-deps facenet-pytorch` (`make install` does)"


def weights_dir() -> Path:
    """The folder holding ``pnet.pt``, ``rnet.pt`` and ``onet.pt`` of the installed facenet-pytorch, found
    without importing the package.

    Raises:
        CnnkitError: facenet-pytorch is not installed, or its weight files are missing.
    """
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise CnnkitError(f"expected the MTCNN weight files of facenet-pytorch, found no such package; {INSTALL}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    missing = [n for n in ("pnet.pt", "rnet.pt", "onet.pt") if not (folder / n).is_file()]
    if missing:
        raise CnnkitError(f"expected the MTCNN weight files in {str(folder)!r}, found {', '.join(missing)} missing;"
                          f" reinstall them: {INSTALL}")  # fmt: skip
    return folder


def _conv_prelu(cin: int, cout: int, k: int) -> tuple[nn.Conv2d, nn.PReLU]:
    return nn.Conv2d(cin, cout, k), nn.PReLU(cout)


def _caffe_flatten(x: Tensor) -> Tensor:
    """Tensor[B, C, H, W] -> Tensor[B, W·H·C]: Caffe's flattening order, which the converted fc weights expect."""
    return x.permute(0, 3, 2, 1).flatten(1)


class PNet(nn.Module):
    """Proposal network, fully convolutional: Tensor[B, 3, H, W] (scaled to [-1, 1]) -> box offsets
    Tensor[B, 4, H', W'] and face probability Tensor[B, H', W'], one cell per 12×12 window at stride 2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = _conv_prelu(3, 10, 3)
        self.conv2, self.prelu2 = _conv_prelu(10, 16, 3)
        self.conv3, self.prelu3 = _conv_prelu(16, 32, 3)
        self.conv4_1 = nn.Conv2d(32, 2, 1)  # face / not face
        self.conv4_2 = nn.Conv2d(32, 4, 1)  # box offsets

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 2, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), self.conv4_1(x).softmax(1)[:, 1]


class RNet(nn.Module):
    """Refinement network: Tensor[B, 3, 24, 24] -> box offsets Tensor[B, 4], face probability Tensor[B]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = _conv_prelu(3, 28, 3)
        self.conv2, self.prelu2 = _conv_prelu(28, 48, 3)
        self.conv3, self.prelu3 = _conv_prelu(48, 64, 2)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)  # [B, 28, 11, 11]
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)  # [B, 48, 4, 4]
        x = self.prelu4(self.dense4(_caffe_flatten(self.prelu3(self.conv3(x)))))  # [B, 128]
        return self.dense5_2(x), self.dense5_1(x).softmax(1)[:, 1]


class ONet(nn.Module):
    """Output network: Tensor[B, 3, 48, 48] -> box offsets Tensor[B, 4], landmarks Tensor[B, 10] (5 x then 5 y,
    as fractions of the box) and face probability Tensor[B]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = _conv_prelu(3, 32, 3)
        self.conv2, self.prelu2 = _conv_prelu(32, 64, 3)
        self.conv3, self.prelu3 = _conv_prelu(64, 64, 3)
        self.conv4, self.prelu4 = _conv_prelu(64, 128, 2)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)  # [B, 32, 23, 23]
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)  # [B, 64, 10, 10]
        x = F.max_pool2d(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)  # [B, 64, 4, 4]
        x = self.prelu5(self.dense5(_caffe_flatten(self.prelu4(self.conv4(x)))))  # [B, 256]
        return self.dense6_2(x), self.dense6_3(x), self.dense6_1(x).softmax(1)[:, 1]


@dataclass
class Faces:
    """The faces found in one image: ``boxes`` Tensor[N, 4] xyxy pixels, ``scores`` Tensor[N] (O-Net's face
    probability), ``landmarks`` Tensor[N, 5, 2] (x, y) pixels; best score first."""

    boxes: Tensor
    scores: Tensor
    landmarks: Tensor


def _normalize(x: Tensor) -> Tensor:
    return (x.float() - 127.5) * 0.0078125  # the networks' input scaling, [0, 255] -> [-1, 1)


def _square(boxes: Tensor) -> Tensor:
    """Boxes Tensor[N, 4] xyxy -> squares with the same centres and side max(w, h)."""
    c, side = (boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]).amax(1, keepdim=True)
    return torch.cat([c - side / 2, c + side / 2], 1)


def _regress(boxes: Tensor, offsets: Tensor) -> Tensor:
    """Apply the networks' box offsets Tensor[N, 4] (fractions of the width and height) to boxes Tensor[N, 4]."""
    wh = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    return boxes + offsets * wh


def crops(image: Tensor, boxes: Tensor, size: int) -> Tensor:
    """uint8 image Tensor[3, H, W] and xyxy boxes Tensor[N, 4] -> Tensor[N, 3, size, size] (float, 0–255);
    the parts of a box outside the image are zeros, as in the original MTCNN."""
    h, w = image.shape[-2:]
    out = []
    for x1, y1, x2, y2 in boxes.round().long().tolist():
        x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
        patch = image.new_zeros(3, y2 - y1, x2 - x1, dtype=torch.float32)
        sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
        if sx2 > sx1 and sy2 > sy1:
            patch[:, sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = image[:, sy1:sy2, sx1:sx2]
        out.append(F.interpolate(patch[None], size=(size, size), mode="area"))
    return torch.cat(out) if out else image.new_zeros(0, 3, size, size, dtype=torch.float32)


class MTCNN(nn.Module):
    """The cascade: ``detect(image uint8 Tensor[3, H, W]) -> Faces``.

    Args:
        min_face: the smallest face side to look for, in pixels (the pyramid's largest scale is 12 / min_face).
        thresholds: the face probability each of P-, R- and O-Net needs to keep a window.
        factor: the scale step of the pyramid.
    """

    def __init__(self, min_face: int = 20, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
                 factor: float = 0.709) -> None:  # fmt: skip
        super().__init__()
        if min_face < 12:
            raise CnnkitError(f"expected a smallest face of at least 12 pixels (P-Net's window), found {min_face}")
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        self.min_face, self.thresholds, self.factor = min_face, thresholds, factor
        self.eval()

    @classmethod
    def pretrained(cls, **kwargs) -> MTCNN:
        """The cascade with the published weights from facenet-pytorch's files (see :func:`weights_dir`)."""
        model, folder = cls(**kwargs), weights_dir()
        for name in ("pnet", "rnet", "onet"):
            state = torch.load(folder / f"{name}.pt", map_location="cpu", weights_only=True)
            getattr(model, name).load_state_dict(state)
        return model

    def scales(self, h: int, w: int) -> list[float]:
        """The pyramid: from 12 / min_face down by ``factor`` while the shorter side still holds a 12-px window."""
        scale, out = 12 / self.min_face, []
        while min(h, w) * scale >= 12:
            out.append(scale)
            scale *= self.factor
        return out

    def propose(self, image: Tensor) -> Tensor:
        """Stage 1, P-Net over the pyramid: Tensor[N, 5] boxes xyxy (regressed, squared) and probability."""
        h, w = image.shape[-2:]
        found = []
        for s in self.scales(h, w):
            x = F.interpolate(image[None].float(), size=(int(h * s + 1), int(w * s + 1)), mode="area")
            reg, prob = self.pnet(_normalize(x))  # [1, 4, h', w'], [1, h', w']
            ys, xs = (prob[0] >= self.thresholds[0]).nonzero(as_tuple=True)
            cells = torch.stack([xs, ys], 1).float()
            boxes = torch.cat([((2 * cells + 1) / s).floor(), ((2 * cells + 12) / s).floor()], 1)
            keep = nms(boxes, prob[0, ys, xs], 0.5)
            found.append(torch.cat([boxes, prob[0, ys, xs, None], reg[0, :, ys, xs].T], 1)[keep])
        cand = torch.cat(found) if found else image.new_zeros(0, 9, dtype=torch.float32)
        cand = cand[nms(cand[:, :4], cand[:, 4], 0.7)]
        return torch.cat([_square(_regress(cand[:, :4], cand[:, 5:])), cand[:, 4:5]], 1)

    def refine(self, image: Tensor, boxes: Tensor) -> Tensor:
        """Stage 2, R-Net on 24×24 crops: the boxes Tensor[N, 5] that pass, regressed and squared."""
        if len(boxes) == 0:
            return boxes
        reg, prob = self.rnet(_normalize(crops(image, boxes[:, :4], 24)))
        ok = prob > self.thresholds[1]
        boxes, reg, prob = boxes[ok, :4], reg[ok], prob[ok]
        keep = nms(boxes, prob, 0.7)
        return torch.cat([_square(_regress(boxes[keep], reg[keep])), prob[keep, None]], 1)

    def output(self, image: Tensor, boxes: Tensor) -> Faces:
        """Stage 3, O-Net on 48×48 crops: the final boxes, probabilities and 5 landmarks (best first)."""
        if len(boxes) == 0:
            return Faces(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 5, 2))
        reg, marks, prob = self.onet(_normalize(crops(image, boxes[:, :4], 48)))
        ok = prob > self.thresholds[2]
        boxes, reg, marks, prob = boxes[ok, :4], reg[ok], marks[ok], prob[ok]
        wh = boxes[:, 2:] - boxes[:, :2]  # [N, 2]
        points = torch.stack([marks[:, :5], marks[:, 5:]], 2) * wh[:, None] + boxes[:, None, :2]  # [N, 5, 2]
        boxes = _regress(boxes, reg)
        keep = nms(boxes, prob, 0.7)  # sorted by score
        return Faces(boxes[keep], prob[keep], points[keep])

    @torch.no_grad()
    def detect(self, image: Tensor) -> Faces:
        """uint8 Tensor[3, H, W] RGB -> the faces in it (:class:`Faces`, coordinates in its pixels)."""
        if image.ndim != 3 or image.shape[0] != 3:
            raise CnnkitError(f"expected an RGB image Tensor[3, H, W], found shape {tuple(image.shape)}")
        return self.output(image, self.refine(image, self.propose(image)))
