"""The training objective: cross-entropy (hard or MixUp/CutMix soft targets, label smoothing, class weights),
auxiliary classifier losses, and an explicit L1 penalty."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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

    def __init__(self, model: nn.Module, *, label_smoothing: float = 0.0, weight: Tensor | None = None,
                 aux_weight: float = 0.3, l1: float = 0.0) -> None:  # fmt: skip
        self.label_smoothing, self.weight, self.aux_weight, self.l1 = label_smoothing, weight, aux_weight, l1
        self.l1_params = [p for p in model.parameters() if p.ndim > 1 and p.requires_grad] if l1 else []

    def ce(self, logits: Tensor, target: Tensor) -> Tensor:
        w = None if self.weight is None else self.weight.to(logits.device)
        return F.cross_entropy(logits.float(), target, weight=w, label_smoothing=self.label_smoothing)

    def __call__(self, output: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """-> (total loss, main logits Tensor[B, K])."""
        logits, aux = split_aux(output)
        loss = self.ce(logits, target)
        for a in aux:  # GoogLeNet's auxiliary classifiers: weighted 0.3 in the paper
            loss = loss + self.aux_weight * self.ce(a, target)
        if self.l1:
            loss = loss + self.l1 * sum(p.abs().sum() for p in self.l1_params)
        return loss, logits
