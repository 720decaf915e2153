"""Detectors as ONNX graphs (``cnnkit export`` of a detect run): normalised images in, every detection out, after
decoding and NMS, as one flat list that ONNX Runtime handles whatever the number of detections.

Outputs (the ONNX names, in this order):

* ``boxes`` float32 [D, 4]: ``xyxy`` in the model's input pixels;
* ``scores`` float32 [D];
* ``labels`` int64 [D]: cnnkit's class indices 0…C−1;
* ``counts`` int64 [N]: detections per image; image i's are the ``counts[i]`` rows after those of images 0…i−1,
  best score first.

The file keeps every detection with score above ``conf`` (0.001, the task's ``EVAL_CONF``: what mAP uses); the
predictor applies its own threshold afterwards (0.25 to show), which leaves exactly what PyTorch keeps at that
threshold: NMS keeps or drops a box by the better boxes only, and the candidate and per-image caps keep the best,
so thresholding before or after them is the same.

* YOLO (``yolo_<backbone>``): the batch axis is dynamic. The graph decodes, keeps each image's 1000 best (anchor,
  class) candidates and runs ONNX's NonMaxSuppression per image and class
  (:func:`~cnnkit.detection.yolo.detect_flat`); the cap of 100 per image is applied when the outputs are read back
  (:func:`to_detections`), as in PyTorch.
* torchvision's detectors (``fasterrcnn_``, ``retinanet_``, ``fcos_``, ``ssdlite_<backbone>``): their own
  post-processing (RPN, RoI heads or per-level top-k, NMS, 100 per image), traced by the TorchScript exporter. Their
  code loops over the images in Python, which tracing unrolls, so they are exported for one image (batch axis 1) and
  ONNX Runtime runs a batch image by image (``batch_of_one``; :func:`~cnnkit.deploy.onnx_backend.run_session`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..errors import CnnkitError
from .yolo import MAX_DET, OUTPUTS, detect_flat, split_outputs

TIE = 1e-5  # scores this close may fall either side of a cut (the threshold, the cap) in the two backends
RADIUS = 1.0  # pixels: the farthest a box's counterpart may be (float noise is ~1e-5; another detection is farther)


class YoloGraph(nn.Module):
    """A YOLO detector with its decoding and NMS: normalised Tensor[N, C, H, W] -> (boxes [D, 4], scores [D],
    labels [D], counts [N]) of every detection with score above ``conf``."""

    def __init__(self, model: nn.Module, conf: float) -> None:
        super().__init__()
        self.model, self.conf = model, conf

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        m = self.model
        return detect_flat(m(x), m.anchors, m.stride, (x.shape[-2], x.shape[-1]), self.conf)


class TorchvisionGraph(nn.Module):
    """A torchvision detector in eval mode, for one image: normalised Tensor[1, C, H, W] -> (boxes [D, 4],
    scores [D], labels [D], counts [1]) of its detections with score above ``conf`` (at most 100)."""

    batch_of_one = True  # torchvision loops over the images in Python; tracing would fix their number

    def __init__(self, model: nn.Module, conf: float) -> None:
        super().__init__()
        self.model = model
        model._set_score_threshold(conf)  # evaluate_batch sets it again on every call

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        (p,) = self.model(x)
        return p["boxes"], p["scores"], p["labels"], torch.ones_like(p["labels"]).sum().reshape(1)


def detection_graph(model: nn.Module, conf: float) -> nn.Module:
    """The module the exporter traces for a cnnkit detector (:class:`YoloGraph` or :class:`TorchvisionGraph`)."""
    return YoloGraph(model, conf) if model.kind == "yolo" else TorchvisionGraph(model, conf)


def to_detections(outs: Sequence[Tensor]) -> list[dict[str, Tensor]]:
    """ONNX Runtime's (boxes, scores, labels, counts) -> per image ``boxes`` [D, 4], ``scores`` [D], ``labels``
    [D], the 100 best: what a detector's ``evaluate_batch`` returns at the file's threshold."""
    return split_outputs(outs)


def compare_detections(got: Sequence[Tensor], want: Sequence[Tensor], conf: float = 0.001, cap: int = MAX_DET,
                       names: Sequence[str] = OUTPUTS) -> tuple[float, str]:  # fmt: skip
    """ONNX Runtime's detections against PyTorch's, image by image: each PyTorch detection matched to the ONNX
    Runtime one of the same class with the nearest box -> (the largest difference of a box coordinate in pixels,
    a score or any other output per detection (``names``, e.g. masks) over the matched pairs, "over D detections
    …").

    A detection without a counterpart is borderline, and accepted, when scores equal to float precision (within
    :data:`TIE`) explain it: its score is at the threshold ``conf``, or the other backend's list is full (``cap``
    detections) and ends at its score (an untrained RetinaNet scores every anchor 0.0100). Any other is an error,
    a box moved or a tie that NMS broke the other way alike (boxes that overlap with exactly equal scores: rare
    in real images, and ``--check`` on other images tells them apart).

    Raises:
        CnnkitError: an image where the two find different detections (or a different number), not borderline.
    """
    diff, n, borderline = 0.0, 0, 0
    for i, (g, w) in enumerate(zip(split_outputs(got, names, None), split_outputs(want, names, None))):
        pairs = match_detections(w, g)
        left = _left_over(g, w, pairs)
        if not all(_borderline(d, k, other, conf, cap) for _, d, k, other in left):
            raise CnnkitError(_mismatch(i, g, w, left))
        borderline += len(left)
        if len(pairs):
            a, b = pairs[:, 0], pairs[:, 1]
            diff = max(diff, *(float((w[k][a].float() - g[k][b].float()).abs().max()) for k in w if k != "labels"))
        n += len(pairs)
    if not n:
        return diff, f"over 0 detections (none above {conf:g} on these images: nothing compared; pass --check IMAGE…)"
    note = f"; {borderline} borderline: scores at a cut, in one backend only" if borderline else ""
    what = ", ".join(["boxes in pixels", *(k for k in names if k not in ("boxes", "labels", "counts"))])
    return diff, f"over {n} detections ({what}; each matched to its counterpart{note})"


def match_detections(a: dict[str, Tensor], b: dict[str, Tensor]) -> Tensor:
    """Pairs (i, j) Tensor[M, 2]: each detection i of ``a``, best first, with the unmatched detection j of ``b`` of
    the same class whose box is nearest (largest coordinate difference), within :data:`RADIUS` pixels; none for an
    ``a`` detection without one."""
    if not len(a["boxes"]) or not len(b["boxes"]):
        return torch.zeros(0, 2, dtype=torch.long)
    cost = (a["boxes"][:, None, :].float() - b["boxes"][None, :, :].float()).abs().amax(-1)  # [Da, Db]
    cost[(a["labels"][:, None] != b["labels"][None, :]) | (cost > RADIUS)] = torch.inf
    pairs: list[tuple[int, int]] = []
    for i in range(len(cost)):
        j = int(cost[i].argmin())
        if torch.isfinite(cost[i, j]):
            pairs.append((i, j))
            cost[:, j] = torch.inf
    return torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)


def _left_over(got: dict[str, Tensor], want: dict[str, Tensor], pairs: Tensor) -> list[tuple[str, dict, int, dict]]:
    """The detections of either backend without a counterpart: (which backend, its detections, the index, the
    other backend's detections)."""
    mine, theirs = set(pairs[:, 1].tolist()), set(pairs[:, 0].tolist())
    left = [("PyTorch's", want, k, got) for k in range(len(want["scores"])) if k not in theirs]
    return left + [("ONNX Runtime's", got, k, want) for k in range(len(got["scores"])) if k not in mine]


def _borderline(d: dict[str, Tensor], k: int, other: dict[str, Tensor], conf: float, cap: int) -> bool:
    """Whether detection ``k`` of ``d``, without a counterpart in ``other``, has a score at a cut: the threshold,
    or the end of the other backend's full list."""
    score = float(d["scores"][k])
    return abs(score - conf) <= TIE or (len(other["scores"]) >= cap and score <= float(other["scores"].min()) + TIE)


def _mismatch(i: int, got: dict[str, Tensor], want: dict[str, Tensor], left: list) -> str:
    """The one-line error for check image ``i`` whose detections don't pair up, naming the best one left over."""
    who, d, k, _ = max(left, key=lambda t: float(t[1]["scores"][t[2]]))
    box = ", ".join(f"{v:.1f}" for v in d["boxes"][k].tolist())
    count = (f"found {len(got['scores'])}" if len(got["scores"]) != len(want["scores"])
             else f"found as many but {len(left) // 2} of them different")  # fmt: skip
    return (
        f"expected ONNX Runtime to find PyTorch's {len(want['scores'])} detections on check image {i + 1}, {count}"
        f" (the best without a counterpart: {who} class {int(d['labels'][k])} score {float(d['scores'][k]):.4f} at"
        f" [{box}]); the exported post-processing differs from PyTorch's, try --check with other images and report"
        " it if it persists"
    )
