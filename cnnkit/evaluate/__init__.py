"""Evaluation: metrics on a split, reports."""

from .metrics import classification_metrics, collect_logits

__all__ = ["classification_metrics", "collect_logits"]
