"""The ONNX Runtime backend: an exported ``.onnx`` file as a predictor with the same API and output as the
PyTorch one (``cnnkit.deploy.load_onnx(path)``, ``cnnkit predict … --backend onnxruntime``).

The file's metadata holds the run card, so the task's own predictor class (``Predictor``, ``BoxPredictor``, …)
is built around :class:`OrtModule`, a module whose forward pass runs the ONNX Runtime session; preprocessing
and post-processing are the task's own code, shared with the PyTorch backend.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import CnnkitError
from ..runcard import RunCard
from .specs import ExportSpec, spec_for

BACKENDS = ("eager", "onnxruntime")


def session(model: str | Path | bytes, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session for a file or serialized model; ``threads`` intra-op threads (default: the
    cores this process may use)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise CnnkitError("expected onnxruntime to be installed, found none; pip install 'cnnkit[deploy]'") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/NoSuchFile types
        where = "the serialized model" if isinstance(model, bytes) else repr(str(model))
        text = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise CnnkitError(f"expected an ONNX model at {where}, found one ONNX Runtime can't load ({text})") from None


def run_session(sess: Any, x: Tensor) -> list[Tensor]:
    """Normalised images Tensor[B, C, H, W] through the session -> its outputs, as tensors. A file exported for one
    image at a time (its batch axis is 1) runs image by image, each output concatenated along its axis 0."""
    name = sess.get_inputs()[0].name
    arr = x.detach().float().cpu().contiguous().numpy()
    if sess.get_inputs()[0].shape[0] == 1 and len(arr) > 1:
        runs = [sess.run(None, {name: arr[i : i + 1]}) for i in range(len(arr))]
        return [torch.from_numpy(np.concatenate(parts)) for parts in zip(*runs)]
    return [torch.from_numpy(o) for o in sess.run(None, {name: arr})]


class OrtModule(nn.Module):
    """An ONNX Runtime session that looks like the task's model: normalised Tensor[B, C, H, W] in, the task's
    output out (logits Tensor[B, K]; for localisation ``LocalizerOutput(logits, boxes)``; for detection per image
    ``{"boxes", "scores", "labels"}``)."""

    def __init__(self, sess: Any, spec: ExportSpec) -> None:
        super().__init__()
        self.session, self.spec = sess, spec

    def forward(self, x: Tensor) -> Any:
        return self.spec.to_output(run_session(self.session, x))


def read_card_from_onnx(sess: Any, where: str) -> RunCard:
    """The run card stored in the file's metadata by ``cnnkit export``."""
    meta = sess.get_modelmeta().custom_metadata_map
    from .export import CARD_KEY

    if CARD_KEY not in meta:
        raise CnnkitError(
            f"expected an ONNX file written by `cnnkit export` (with its run card in the metadata) at {where!r},"
            " found one without; export the model with cnnkit"
        )
    try:
        return RunCard.from_dict(json.loads(meta[CARD_KEY]), f"{where} metadata")
    except json.JSONDecodeError:
        raise CnnkitError(f"expected a JSON run card in the metadata of {where!r}, found damaged text") from None


def load_onnx(path: str | Path, threads: int | None = None) -> Any:
    """The task's predictor running ``path`` in ONNX Runtime: ``.predict(images)``, ``.classes``, ``.card``."""
    path = Path(path)
    if not path.is_file():
        raise CnnkitError(f"expected an .onnx file, found nothing at {str(path)!r}; write one with `cnnkit export`")
    sess = session(path, threads)
    card = read_card_from_onnx(sess, str(path))
    spec = spec_for(card.task)
    return spec.predictor_class()(OrtModule(sess, spec), card)
