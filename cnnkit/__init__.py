"""cnnkit: convolutional neural networks for computer vision, from a hand-made filter to a deployed model.

The public API is imported on first use (``cnnkit.load``, ``cnnkit.create_model``, …), so ``import cnnkit``
and ``cnnkit --version`` stay instant and load no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import CnnkitError

__version__ = "0.1.0"

_LAZY = {
    "create_model": "cnnkit.models",
    "list_models": "cnnkit.models",
    "model_info": "cnnkit.models",
    "load": "cnnkit.tasks",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cnnkit' has no attribute {name!r}")


__all__ = ["CnnkitError", "__version__", "create_model", "list_models", "load", "model_info"]
