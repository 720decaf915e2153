"""The classification objective: cross-entropy (hard or MixUp/CutMix soft targets, label smoothing, class
weights) and auxiliary classifier losses. The L1 penalty is the engine's (it applies to every task)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import CnnkitError
from ..models._contract import split_aux


def class_weights(labels: Tensor, num_classes: int, mode: str) -> Tensor | None:
    """``balanced``: w_c = N / (K · n_c) from the training labels Tensor[N]; ``none``: None."""
    if mode == "none":
        return None
    if mode != "balanced":
        raise CnnkitError(f"expected train.class_weights none or balanced, found {mode!r}")
    counts = torch.bincount(labels, minlength=num_classes).float()
    return len(labels) / (num_classes * counts.clamp(min=1))


class Objective:
    """loss(output, target) for a model output (logits or ``AuxOutput``) and a target Tensor[B] or Tensor[B, K]."""

    def __init__(self, *, label_smoothing: float = 0.0, weight: Tensor | None = None, aux_weight: float = 0.3) -> None:
        self.label_smoothing, self.weight, self.aux_weight = label_smoothing, weight, aux_weight

    def ce(self, logits: Tensor, target: Tensor) -> Tensor:
        w = None if self.weight is None else self.weight.to(logits.device)
        return F.cross_entropy(logits.float(), target, weight=w, label_smoothing=self.label_smoothing)

    def __call__(self, output: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """-> (total loss, main logits Tensor[B, K])."""
        logits, aux = split_aux(output)
        loss = self.ce(logits, target)
        for a in aux:  # GoogLeNet's auxiliary classifiers: weighted 0.3 in the paper
            loss = loss + self.aux_weight * self.ce(a, target)
        return loss, logits
