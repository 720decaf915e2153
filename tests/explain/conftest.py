"""Helpers for the explain tests: models built on the meta device (no weights allocated)."""

from __future__ import annotations

import pytest
import torch

import cnnkit


def meta_model(name: str, **kwargs):
    """``create_model(name)`` on the meta device; skips when the model is not registered (yet)."""
    if not name.endswith((".yaml", ".yml")) and name not in cnnkit.list_models():
        pytest.skip(f"model {name!r} is not registered")
    with torch.device("meta"):
        return cnnkit.create_model(name, **kwargs)
