"""One way to get a predictor for the deploy commands and ``cnnkit predict --backend``: from a run directory, an
exported ``.onnx`` file, or a registered model (published weights, a local state dict, or freshly initialised
for timing), on the PyTorch (``eager``) or ONNX Runtime backend."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from ..errors import CnnkitError
from ..io import cache_dir
from ..runcard import InputSpec, RunCard
from .onnx_backend import BACKENDS, load_onnx


def load_predictor(
    run: str | Path | None = None,
    *,
    model: str | None = None,
    pretrained: bool = False,
    weights: str | None = None,
    backend: str = "eager",
    allow_random: bool = False,
    log: Any = None,
    predicting: bool = False,
) -> Any:
    """The predictor of ``run`` (a run directory or an ``.onnx`` file) or of ``model`` on ``backend``.

    With ``backend="onnxruntime"`` a run is exported once to ``RUN/model.onnx`` (again when its weights are newer),
    published weights to the cache (``~/.cache/cnnkit/onnx``); ``log`` (default stderr) says so.
    ``predicting`` (`cnnkit predict`, `cnnkit serve`): a model that gives no predictions (a verify run's embedder)
    is refused here, before anything is exported or served.
    """
    if backend not in BACKENDS:
        raise CnnkitError(f"expected a backend among {', '.join(BACKENDS)}, found {backend!r}")
    if run is not None and str(run).endswith(".onnx"):
        return _checked(load_onnx(run), predicting)  # an exported file runs in ONNX Runtime whatever the backend
    eager = _checked(_eager(run, model, pretrained, weights, allow_random), predicting)
    if backend == "eager":
        return eager
    out = _onnx_path(run, model, pretrained)
    if out is None or not out.is_file() or (run is not None and _older(out, Path(run) / "model.safetensors")):
        from .export import export_onnx

        out = out or Path(tempfile.mkdtemp(prefix="cnnkit-onnx-")) / f"{model}.onnx"
        result = export_onnx(eager, out)
        (log or (lambda s: print(s, file=sys.stderr)))(result.describe())
    return load_onnx(out)


def _checked(predictor: Any, predicting: bool) -> Any:
    """``predictor`` as is, unless it is asked to predict and cannot (its ``predict`` then raises its one line)."""
    if predicting and not getattr(predictor, "predicts", True):
        predictor.predict([])
    return predictor


def _eager(run: Any, model: str | None, pretrained: bool, weights: str | None, allow_random: bool) -> Any:
    from ..predict import Predictor

    if (run is None) == (model is None):
        raise CnnkitError("expected either a run directory (or .onnx file) or --model NAME, found "
                          + ("both" if model else "neither"))  # fmt: skip
    if run is not None:
        from ..tasks import load

        return load(run)
    if pretrained or weights:
        return Predictor.from_pretrained(model, weights)
    if not allow_random:
        raise CnnkitError(f"expected --pretrained or --weights PATH with --model {model}, found neither")
    return random_predictor(model)


def random_predictor(name: str) -> Any:
    """``name`` freshly initialised (for export and timing only: its predictions mean nothing), class indices as
    names, the model's own input size and mean/std."""
    from ..models import create_model
    from ..predict import Predictor

    net = create_model(name)
    c, h, w = net.default_input
    pre = {"mode": "L" if c == 1 else "RGB", "resize": [h, w], "scale": 255.0, "mean": list(net.mean),
           "std": list(net.std)}  # fmt: skip
    card = RunCard(name, net.num_classes, [str(i) for i in range(net.num_classes)], InputSpec(c, h, w), pre)
    return Predictor(net, card)


def _onnx_path(run: Any, model: str | None, pretrained: bool) -> Path | None:
    if run is not None:
        return Path(run) / "model.onnx"
    return cache_dir() / "onnx" / f"{model}-pretrained.onnx" if pretrained else None


def _older(a: Path, b: Path) -> bool:
    return b.exists() and a.stat().st_mtime < b.stat().st_mtime
