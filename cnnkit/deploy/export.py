"""ONNX export of any task's model, checked against PyTorch right after writing.

The run card (classes, preprocessing, task, input) travels inside the file as ONNX metadata
(``metadata_props["cnnkit.card"]``), so the ``.onnx`` alone is enough to predict (:func:`cnnkit.deploy.load_onnx`);
a task may add its own entries (a verify run: its distance threshold, ``cnnkit.threshold``, and ``cnnkit.distance``).
The batch axis is always dynamic. Height and width are dynamic when asked (``dynamic_size=True``, where the task
and the model allow it): that uses the dynamo exporter, which keeps them dynamic unless the model's code fixes
them, and checks the file at a second size. It is opt-in because it is slow: MobileNetV2 took 33 s against
1 s for the TorchScript exporter, and EfficientNet-Lite0 (TensorFlow "same" padding computed in Python) had not
finished after 6 minutes (a busy 2-core machine); the predictors resize every image to the card's size anyway.
Every export is run in ONNX Runtime on real photographs (scikit-learn's sample images, or the caller's) and
compared with PyTorch; the maximum difference is reported. Outputs are compared elementwise unless the task's spec
says how (detectors: each detection matched to its counterpart, boxes in pixels and scores; a different number of
detections is an error of its own).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import CnnkitError
from ..io import atomic_write
from .specs import EXPORTERS, ExportSpec, spec_for

CARD_KEY = "cnnkit.card"
TOLERANCE = 1e-3  # largest |ONNX Runtime − PyTorch| accepted on normalised-image inputs
TS_OPSET = 17


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote: the file, the exporter used, the input shape with its dynamic axes
    (``["batch", 3, 224, 224]``), and the largest difference from PyTorch on ``checked`` real images."""

    path: Path
    exporter: str
    input_shape: list[int | str]
    max_diff: float
    checked: int
    seconds: float
    fallback_reason: str = ""
    compared: str = ""  # what the difference is over, when the spec says ("over 37 detections (…)")

    def describe(self) -> str:
        shape = "×".join(str(d) for d in self.input_shape)
        line = (f"wrote {self.path} ({self.path.stat().st_size / 1e6:.1f} MB, {self.exporter} exporter, input"
                f" {shape}, {self.seconds:.1f} s); ONNX Runtime vs PyTorch on {self.checked} real images: max"
                f" difference {self.max_diff:.2e}{' ' + self.compared if self.compared else ''}")  # fmt: skip
        return f"{line}\n  ({self.fallback_reason})" if self.fallback_reason else line


def export_onnx(
    predictor: Any,
    out: str | Path,
    *,
    exporter: str | None = None,
    dynamic_size: bool = False,
    images: Sequence[Any] | None = None,
    tolerance: float = TOLERANCE,
) -> ExportResult:
    """Export ``predictor.model`` (a ``cnnkit.load`` predictor) to ``out`` and check it in ONNX Runtime.

    Args:
        predictor: has ``.model``, ``.card`` (a ``RunCard``), ``.normalize`` and ``.to_tensor(image)``.
        out: the ``.onnx`` path (written atomically).
        exporter: ``dynamo`` or ``torchscript``; default the task's choice, with the other as fallback.
        dynamic_size: a dynamic height and width too (dynamo exporter; refused for fixed-size models).
        images: real images to check with (paths, arrays, …); default scikit-learn's two sample photographs.
        tolerance: the largest difference accepted.

    Raises:
        CnnkitError: the model can't be exported (naming the layer and why), or ONNX Runtime disagrees.
    """
    spec = spec_for(predictor.card.task)
    if exporter is not None and exporter not in EXPORTERS:
        raise CnnkitError(f"expected an exporter among {', '.join(EXPORTERS)}, found {exporter!r}")
    model = spec.wrap(predictor.model.cpu()).eval()  # the wrapper too: exporters restore its mode on all modules
    if dynamic_size:
        _check_dynamic_size(model, spec, exporter)
        exporter = "dynamo"
    x = real_inputs(predictor, images)  # Tensor[N, C, H, W] normalised
    extra = spec.metadata(predictor) if spec.metadata is not None else {}
    start = time.perf_counter()
    proto, used, why = export_with_fallback(model, x, spec, exporter, dynamic_size)
    add_metadata(proto, predictor.card, spec, used, extra)
    data = proto.SerializeToString()
    diff, compared = difference(data, model, x, spec)
    diff = max(diff, _check_other_size(data, model, x, spec))
    if not diff <= tolerance:
        raise CnnkitError(
            f"expected ONNX Runtime to match PyTorch within {tolerance:g}, found a difference of {diff:.3g}; the"
            f" {used} exporter changed the model's meaning, try --exporter {_other(used)}"
        )
    path = atomic_write(out, lambda tmp: Path(tmp).write_bytes(data))
    return ExportResult(path, used, input_shape(proto), diff, len(x), time.perf_counter() - start, why, compared)


def real_inputs(predictor: Any, images: Sequence[Any] | None = None) -> Tensor:
    """Real photographs, preprocessed as the predictor does: normalised Tensor[N, C, H, W] (N ≥ 2, so the export
    sees a batch axis that is not 1)."""
    if images is None:
        from sklearn.datasets import load_sample_images

        images = list(load_sample_images().images)  # china.jpg, flower.jpg: 427×640 RGB uint8 arrays
    batch = torch.stack([predictor.to_tensor(im) for im in images])
    if len(batch) == 1:
        batch = torch.cat([batch, batch.flip(-1)])
    return predictor.normalize(batch).float().cpu()


def export_with_fallback(
    model: nn.Module, x: Tensor, spec: ExportSpec, exporter: str | None, dynamic_size: bool = False
) -> tuple[Any, str, str]:
    """(ONNX ModelProto, the exporter used, why the first choice was not used or "")."""
    first = exporter or spec.exporter
    order = [first] if exporter or not spec.fallback else [first, _other(first)]
    errors: list[str] = []
    for name in order:
        try:
            proto = export_proto(model, x, spec, name, dynamic_size)
            return proto, name, (f"{first} exporter failed: {errors[0]}" if errors else "")
        except Exception as e:  # the exporters raise many types; each is reported below
            errors.append(first_line(e))
    raise CnnkitError(
        f"expected a model ONNX can represent, found {failing_layer(model, x)} (tried the {' and '.join(order)}"
        f" exporter); replace that layer, or export without it. First error: {errors[0]}"
    )


def export_proto(model: nn.Module, x: Tensor, spec: ExportSpec, exporter: str, size: bool = False) -> Any:
    """Export with one exporter -> onnx.ModelProto (batch dynamic unless the model is ``batch_of_one``; height and
    width too with ``size``, dynamo)."""
    import onnx

    one = _batch_of_one(model)
    x = x[:1] if one else x
    with _quiet():
        if exporter == "dynamo":
            d = torch.export.Dim
            axes = ({} if one else {0: d("batch", min=1, max=4096)}) | ({2: d.AUTO, 3: d.AUTO} if size else {})
            prog = torch.onnx.export(model, (x,), dynamo=True, input_names=["image"], output_names=list(spec.outputs),
                                     dynamic_shapes=(axes,), optimize=True, verbose=False)  # fmt: skip
            return prog.model_proto
        buf = io.BytesIO()
        axes = {"image": {} if one else {0: "batch"}}
        axes |= {o: {0: "batch", **spec.output_axes.get(o, {})} for o in spec.outputs}
        torch.onnx.export(model, (x,), buf, dynamo=False, input_names=["image"], output_names=list(spec.outputs),
                          dynamic_axes=axes, opset_version=TS_OPSET)  # fmt: skip
        return onnx.load_from_string(buf.getvalue())


def add_metadata(proto: Any, card: Any, spec: ExportSpec, exporter: str, extra: dict[str, str] | None = None) -> None:
    """The run card (classes, preprocessing, task, input), the output names and the task's ``extra`` entries (its
    spec's ``metadata``), as ONNX ``metadata_props``."""
    from .. import __version__

    values = {CARD_KEY: json.dumps(card.to_dict()), "cnnkit.outputs": ",".join(spec.outputs),
              "cnnkit.exporter": exporter, "cnnkit.version": __version__, **(extra or {})}  # fmt: skip
    del proto.metadata_props[:]
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "cnnkit"


def difference(onnx_bytes: bytes, model: nn.Module, x: Tensor, spec: ExportSpec) -> tuple[float, str]:
    """ONNX Runtime against PyTorch on inputs ``x`` Tensor[N, C, H, W]: (the largest difference, what it is over),
    by the spec's ``compare`` or, by default, |ONNX Runtime − PyTorch| over every output."""
    from .onnx_backend import run_session, session

    got = run_session(session(onnx_bytes, threads=1), x)
    want = eager_outputs(model, x)
    if spec.compare is not None:
        return spec.compare(got, want)
    return max_difference(got, want, spec.outputs), ""


def max_difference(got: Sequence[Tensor], want: Sequence[Tensor], names: Sequence[str] = ()) -> float:
    """The largest |got − want| over every output.

    Raises:
        CnnkitError: an output whose shape differs.
    """
    for k, (g, w) in enumerate(zip(got, want)):
        if g.shape != w.shape:
            name = names[k] if k < len(names) else str(k)
            raise CnnkitError(
                f"expected ONNX Runtime's output {name!r} to have PyTorch's shape {tuple(w.shape)}, found"
                f" {tuple(g.shape)}; the exporter fixed a size the model computes, try the other --exporter"
            )
    return max((float((g.float() - w.float()).abs().max()) for g, w in zip(got, want) if w.numel()), default=0.0)


def eager_outputs(model: nn.Module, x: Tensor) -> list[Tensor]:
    """The model's outputs in PyTorch as a list of tensors; a ``batch_of_one`` model runs image by image, each output
    concatenated along its axis 0 (as :func:`~cnnkit.deploy.onnx_backend.run_session` runs its file)."""
    with torch.no_grad():
        if not _batch_of_one(model):
            return _as_list(model(x))
        runs = [_as_list(model(x[i : i + 1])) for i in range(len(x))]
    return [torch.cat(parts) for parts in zip(*runs)]


def _as_list(out: Tensor | Sequence[Tensor]) -> list[Tensor]:
    return [out] if isinstance(out, Tensor) else list(out)


def _batch_of_one(model: nn.Module) -> bool:
    return bool(getattr(model, "batch_of_one", False))


def _check_other_size(onnx_bytes: bytes, model: nn.Module, x: Tensor, spec: ExportSpec) -> float:
    """With dynamic height and width: the same check on the images resized to 7/8 of the size (0 otherwise)."""
    import onnx

    dims = onnx.load_from_string(onnx_bytes).graph.input[0].type.tensor_type.shape.dim
    if not (dims[2].dim_param and dims[3].dim_param):
        return 0.0
    h, w = (max(8, s * 7 // 8) for s in x.shape[-2:])
    return difference(onnx_bytes, model, nn.functional.interpolate(x, size=(h, w), mode="bilinear"), spec)[0]


def input_shape(proto: Any) -> list[int | str]:
    """The input's shape, dynamic axes by name: ``["batch", 3, "height", "width"]``."""
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    names = ["batch", "channels", "height", "width"]
    return [(names[i] if d.dim_param else d.dim_value) for i, d in enumerate(dims)]


def failing_layer(model: nn.Module, x: Tensor) -> str:
    """Which leaf layer can't be exported alone, and why (found by exporting each leaf on its real input)."""
    inputs: dict[str, tuple] = {}
    leaves = {n: m for n, m in model.named_modules() if not list(m.children())}
    hooks = [m.register_forward_pre_hook(lambda m, a, n=n: inputs.setdefault(n, a)) for n, m in leaves.items()]
    try:
        with torch.no_grad():
            model(x[:1])
    except Exception as e:
        return f"a model whose forward pass fails in PyTorch ({first_line(e)})"
    finally:
        for h in hooks:
            h.remove()
    for name, args in inputs.items():
        try:
            with _quiet():
                torch.onnx.export(leaves[name], args, io.BytesIO(), dynamo=False, opset_version=TS_OPSET)
        except Exception as e:
            return f"the layer {name!r} ({type(leaves[name]).__name__}) can't be exported: {first_line(e)}"
    return "no single layer that fails alone (the failure is in the model's own forward code)"


def first_line(e: BaseException) -> str:
    """The first line of an exception's message, without terminal colour codes, at most 300 characters."""
    lines = [s.strip() for s in re.sub(r"\x1b\[[0-9;]*m", "", str(e)).splitlines() if s.strip()]
    return (lines[0] if lines else type(e).__name__)[:300]


def _other(exporter: str) -> str:
    return "torchscript" if exporter == "dynamo" else "dynamo"


def _check_dynamic_size(model: nn.Module, spec: ExportSpec, exporter: str | None) -> None:
    if exporter == "torchscript":
        raise CnnkitError("expected --exporter dynamo with --dynamic-size, found torchscript (it bakes sizes in)")
    if not spec.dynamic_size or _fixed(model):
        raise CnnkitError(
            "expected a model that takes any image size for --dynamic-size, found one whose sizes are fixed"
            " (paper-exact fully connected layers or the task's head); export without it"
        )


def _fixed(model: nn.Module) -> bool:
    """Whether any part of the model needs exactly its default input size (paper-exact fully connected sizes)."""
    return any(getattr(m, "fixed_input", False) for m in model.modules())


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters print progress and warnings; a cnnkit command shows its own one-line result instead."""
    import logging

    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            logger.setLevel(level)
