"""Evaluation: metrics on a split, ensembles and TTA, saved predictions, error analysis, reports."""

from .. import engine  # noqa: F401  (the trainer imports evaluate.metrics: load the engine first, no cycle)
from .ensemble import Evaluation, combine, evaluate
from .metrics import classification_metrics, collect_logits, score
from .predictions import load_predictions, save_predictions

__all__ = [
    "Evaluation",
    "classification_metrics",
    "collect_logits",
    "combine",
    "evaluate",
    "load_predictions",
    "save_predictions",
    "score",
]
