"""Helpers for the explain tests: models built on the meta device (no weights allocated)."""

from __future__ import annotations

import torch

import cnnkit


def meta_model(name: str, **kwargs):
    """``create_model(name)`` on the meta device (an unknown name fails the test, never skips it)."""
    with torch.device("meta"):
        return cnnkit.create_model(name, **kwargs)
