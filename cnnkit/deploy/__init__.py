"""Deploy a model: ONNX export checked against PyTorch, the ONNX Runtime backend, the benchmark table for this
machine, and a web page with a JSON API (``cnnkit export``, ``cnnkit bench``, ``cnnkit serve``).

``onnx``, ``onnxruntime``, ``fastapi`` and ``uvicorn`` come with ``pip install 'cnnkit[deploy]'``; each is
imported only where it is used.
"""

from __future__ import annotations

from .export import ExportResult, export_onnx
from .loading import load_predictor
from .onnx_backend import BACKENDS, OrtModule, load_onnx
from .specs import SPECS, ExportSpec, spec_for

__all__ = [
    "BACKENDS",
    "SPECS",
    "ExportResult",
    "ExportSpec",
    "OrtModule",
    "export_onnx",
    "load_onnx",
    "load_predictor",
    "spec_for",
]
