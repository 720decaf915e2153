"""cnnkit: convolutional neural networks for computer vision, from a hand-made filter to a deployed model."""

from __future__ import annotations

from .errors import CnnkitError
from .models import create_model, list_models, model_info

__version__ = "0.1.0"


def load(run_dir: str):
    """Load a training run directory for prediction: ``.model``, ``.classes``, ``.predict(images)``."""
    from .predict import Predictor

    return Predictor.from_run(run_dir)


__all__ = ["CnnkitError", "__version__", "create_model", "list_models", "load", "model_info"]
