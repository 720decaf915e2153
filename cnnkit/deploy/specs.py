"""How each task's model is exported: its output names, which exporter, which axes may vary, and how ONNX
Runtime's outputs are turned back into what the task's predictor expects.

A task plugs in with one :class:`ExportSpec`: a line in :data:`SPECS` here, or in :data:`LAZY_SPECS` when building
it loads heavy modules (deploy sits above the tasks, so a task never imports this module). Detectors whose
post-processing has data-dependent shapes (torchvision's RPN, SSD and NMS) use ``exporter="torchscript"``
(``torch.onnx.export(dynamo=False)``), which exports them with their NMS; the default (dynamo) exporter fails there.

A wrapper whose ``batch_of_one`` attribute is true is exported for one image at a time (torchvision's detectors loop
over the images in Python, which tracing unrolls): the file's batch axis is 1 and ONNX Runtime runs a batch image by
image, concatenating each output along its axis 0.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

from torch import Tensor, nn

from ..errors import CnnkitError

EXPORTERS = ("dynamo", "torchscript")


@dataclass(frozen=True)
class ExportSpec:
    """What the exporter needs to know about one task.

    Attributes:
        outputs: ONNX output names, in the order the wrapped model returns them (e.g. ``logits``, ``boxes``).
        exporter: the exporter tried first, ``dynamo`` or ``torchscript``; the other is the fallback. A
            dynamic image size always uses ``dynamo`` (the TorchScript exporter bakes sizes the model computes in
            Python into the graph, silently).
        fallback: whether to try the other exporter when the first fails.
        dynamic_size: whether the task's models may be exported with a dynamic height and width.
        output_axes: per output, the names of its dynamic axes beyond the batch axis 0 (``{1: "detections"}``).
        predictor: ``module:Class`` of the task's predictor; it is built with an ONNX Runtime module as its model.
        to_output: ONNX Runtime's outputs (tensors, in ``outputs`` order) -> what the task's model returns.
        wrapper: the model -> a module taking normalised Tensor[B, C, H, W] and returning a tensor or a tuple of
            tensors in ``outputs`` order (a detector that takes a list of images and returns a list of dicts);
            default: a NamedTuple output becomes a tuple.
        compare: (ONNX Runtime's outputs, PyTorch's) -> (the largest difference, what was compared, e.g. "over 37
            detections"); raises ``CnnkitError`` when they can't be compared (detections that differ in number).
            Default: every output elementwise, shapes equal.
        metadata: the predictor -> more ONNX ``metadata_props`` entries of the task (verify: the threshold and its
            distance), beside the run card; default none.
    """

    outputs: tuple[str, ...]
    exporter: str = "torchscript"
    fallback: bool = True
    dynamic_size: bool = True
    output_axes: dict[str, dict[int, str]] = field(default_factory=dict)
    predictor: str = "cnnkit.predict:Predictor"
    to_output: Callable[[Sequence[Tensor]], Any] = lambda outs: outs[0]
    wrapper: Callable[[nn.Module], nn.Module] | None = None
    compare: Callable[[Sequence[Tensor], Sequence[Tensor]], tuple[float, str]] | None = None
    metadata: Callable[[Any], dict[str, str]] | None = None

    def wrap(self, model: nn.Module) -> nn.Module:
        """The model as the exporter sees it: plain tensors out (a NamedTuple becomes a tuple)."""
        if self.wrapper is not None:
            return self.wrapper(model)
        return _Flat(model) if len(self.outputs) > 1 else model

    def predictor_class(self) -> type:
        module, _, cls = self.predictor.partition(":")
        return getattr(importlib.import_module(module), cls)


class _Flat(nn.Module):
    """``model(x)`` as a plain tuple of tensors."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        return tuple(self.model(x))


class _Embeddings(nn.Module):
    """An embedder whose output width is a constant of the graph: Tensor[B, C, H, W] -> Tensor[B, dim]. The
    TorchScript exporter turns the ``expand_as`` inside ``F.normalize`` into a shape computed at run time, so the
    file would declare its embedding width unknown; a reshape to (batch, dim) states it (the values are unchanged;
    with -1 for the batch the exporter still lost the width)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.dim = model, cast(int, model.dim)  # an Embedder's width

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x).reshape(x.shape[0], self.dim)


def _localizer_output(outs: Sequence[Tensor]) -> Any:
    from ..tasks.localize import LocalizerOutput

    return LocalizerOutput(*outs)


def _detect_spec() -> ExportSpec:
    """Detectors: decoding and NMS in the graph, every detection with score above the task's EVAL_CONF as flat
    ``boxes``, ``scores``, ``labels`` and ``counts`` per image (:mod:`cnnkit.detection.export`); the TorchScript
    exporter (the dynamo one fails on torchvision's data-dependent post-processing)."""
    from ..detection.export import OUTPUTS, compare_detections, detection_graph, to_detections
    from ..tasks.detect import EVAL_CONF

    flat = {0: "detections"}
    return ExportSpec(outputs=OUTPUTS, exporter="torchscript", fallback=False, dynamic_size=False,
                      output_axes={"boxes": flat, "scores": flat, "labels": flat},
                      predictor="cnnkit.tasks.detect_eval:DetectPredictor", to_output=to_detections,
                      wrapper=partial(detection_graph, conf=EVAL_CONF),
                      compare=partial(compare_detections, conf=EVAL_CONF))  # fmt: skip


def _segment_spec() -> ExportSpec:
    """Mask R-CNN: its post-processing in the graph (TorchScript exporter, one image at a time), every object with
    score above the task's EVAL_CONF as flat ``boxes``, ``scores``, ``labels``, ``counts`` and ``masks``
    (:mod:`cnnkit.segmentation.export`)."""
    from ..detection.export import compare_detections
    from ..segmentation.export import SEGMENT_OUTPUTS, MaskRCNNGraph, to_instances
    from ..segmentation.model import MAX_OBJECTS
    from ..tasks.segment import EVAL_CONF

    flat = {0: "detections"}
    return ExportSpec(outputs=SEGMENT_OUTPUTS, exporter="torchscript", fallback=False, dynamic_size=False,
                      output_axes={k: flat for k in SEGMENT_OUTPUTS if k != "counts"},
                      predictor="cnnkit.tasks.segment_eval:SegmentPredictor", to_output=to_instances,
                      wrapper=partial(MaskRCNNGraph, conf=EVAL_CONF),
                      compare=partial(compare_detections, conf=EVAL_CONF, cap=MAX_OBJECTS,
                                      names=SEGMENT_OUTPUTS))  # fmt: skip


def _verify_metadata(predictor: Any) -> dict[str, str]:
    """A verify run's decision rule, so the file alone can verify: ``cnnkit.threshold`` (same identity when the
    distance is ≤ it), ``cnnkit.distance`` (``squared euclidean``, of the embeddings) and
    ``cnnkit.threshold_chosen_on``; the preprocessing is the run card's (``cnnkit.card``)."""
    record = predictor.threshold_record()  # the run's verify.json, computed on its validation pairs if missing
    return {"cnnkit.threshold": repr(float(record["threshold"])), "cnnkit.distance": str(record["distance"]),
            "cnnkit.threshold_chosen_on": str(record.get("chosen_on", "")),
            "cnnkit.same_when": "distance(a, b) <= threshold"}  # fmt: skip


# specs built when first asked for (the detectors' modules load torchvision's detection code)
LAZY_SPECS: dict[str, Callable[[], ExportSpec]] = {"detect": _detect_spec, "segment": _segment_spec}

SPECS: dict[str, ExportSpec] = {
    "classify": ExportSpec(outputs=("logits",)),
    "localize": ExportSpec(
        outputs=("logits", "boxes"), predictor="cnnkit.tasks.localize_eval:BoxPredictor", to_output=_localizer_output
    ),
    # embedding networks: normalised images Tensor[N, C, H, W] -> embeddings Tensor[N, D]
    "verify": ExportSpec(
        outputs=("embeddings",),
        predictor="cnnkit.tasks.verify:EmbeddingPredictor",
        wrapper=_Embeddings,
        metadata=_verify_metadata,
    ),
}


def spec_for(task: str) -> ExportSpec:
    """The export spec of ``task``, from :data:`SPECS` or built from :data:`LAZY_SPECS`."""
    if task in LAZY_SPECS:
        return LAZY_SPECS[task]()
    if task not in SPECS:
        raise CnnkitError(
            f"expected a task that can be exported ({', '.join([*SPECS, *LAZY_SPECS])}), found {task!r}; its task"
            " needs an export spec (see cnnkit/deploy/specs.py)"
        )
    return SPECS[task]
