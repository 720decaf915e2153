"""Scoring runs, their ensemble and test-time augmentation (TTA) on one set of examples.

An ensemble averages its members' class probabilities (``mode="prob"``) or their logits (``mode="logit"``);
TTA averages a model's predictions on an image and on its horizontal mirror image, in the same mode. Flips are
refused for datasets where a mirrored image is another class or none (handwritten digits): the data's
``data.hflip`` says so, a property of the data, not of the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..data.augment import NOT_MIRRORABLE
from ..errors import CnnkitError
from .metrics import collect_logits, score
from .runs import EvalSet, Member, load_eval_set, load_member

MODES = ("prob", "logit")


def combine(log_probs: Sequence[Tensor], mode: str = "prob") -> Tensor:
    """Average M predictions, each log-probabilities Tensor[N, K] -> log-probabilities Tensor[N, K].

    ``prob``: log of the mean probability. ``logit``: log-softmax of the mean log-probability, which equals the
    log-softmax of the mean logits (log-softmax only shifts each row by a constant).
    """
    if mode not in MODES:
        raise CnnkitError(f"expected an ensemble mode in {', '.join(MODES)}, found {mode!r}")
    stack = torch.stack(list(log_probs))  # [M, N, K]
    if mode == "prob":
        return torch.logsumexp(stack, 0) - math.log(len(stack))
    return torch.log_softmax(stack.mean(0), -1)


def check_flips(data: str, hflip: bool | None = None) -> None:
    """Raise when horizontal-flip TTA would change what the images of ``data`` show (``data.hflip`` false; by
    default, for the known handwriting datasets)."""
    if not (hflip if hflip is not None else data not in NOT_MIRRORABLE):
        raise CnnkitError(
            f"expected a dataset whose images may be mirrored for --tta, found {data!r} (a mirrored digit is"
            " another character or none); drop --tta"
        )


def hflip(x: Tensor) -> Tensor:
    """Mirror a uint8 batch Tensor[B, C, H, W] left to right."""
    return x.flip(-1)


def predict_member(member: Member, ev: EvalSet, tta: bool, mode: str) -> dict[str, Tensor]:
    """{"plain": log-probs Tensor[N, K]} and, with ``tta``, {"tta": flip-averaged log-probs Tensor[N, K]}."""
    model, normalize = member.predictor.inference_model()
    ds = ev.datasets[member.size]
    logits, _ = collect_logits(model, ds, normalize)
    out = {"plain": torch.log_softmax(logits, 1)}
    if tta:
        flipped, _ = collect_logits(model, ds, normalize, transform=hflip)
        out["tta"] = combine([out["plain"], torch.log_softmax(flipped, 1)], mode)
    return out


@dataclass
class Evaluation:
    """Predictions of each member (and of their ensemble) on one :class:`EvalSet`.

    Each prediction set maps a variant ("plain", "tta") to log-probabilities Tensor[N, K].
    """

    eval_set: EvalSet
    runs: list[str]
    members: list[dict[str, Tensor]]
    ensemble: dict[str, Tensor] | None = None
    mode: str = "prob"

    def headline(self) -> Tensor:
        """The log-probabilities Tensor[N, K] the evaluation stands for: the ensemble's (else the single run's),
        TTA-averaged when TTA was asked for."""
        preds = self.ensemble if self.ensemble is not None else self.members[0]
        return preds.get("tta", preds["plain"])

    def metrics(self) -> dict[str, Any]:
        """JSON-ready metrics: flat for one run; ``members`` and ``ensemble`` for an ensemble."""
        ev = self.eval_set
        head = {"data": ev.source, "split": ev.split, "excluded": ev.excluded}
        if self.ensemble is None:
            return {"run": self.runs[0], **head, **self._score(self.members[0])}
        members = [{"run": r, **self._score(p)} for r, p in zip(self.runs, self.members)]
        return {
            **head,
            "n": len(ev.labels),
            "mode": self.mode,
            "members": members,
            "ensemble": self._score(self.ensemble),
        }

    def _score(self, preds: dict[str, Tensor]) -> dict[str, Any]:
        ev = self.eval_set
        out = score(preds["plain"], ev.labels, ev.classes)
        if "tta" in preds:
            out["tta"] = score(preds["tta"], ev.labels, ev.classes)
        return out


def evaluate(
    runs: Sequence[str | Path],
    data: str | None = None,
    split: str = "test",
    data_dir: str | None = None,
    *,
    ensemble: bool = False,
    mode: str = "prob",
    tta: bool = False,
    device: str = "cpu",
) -> Evaluation:
    """Score ``runs`` on the same examples, on ``device``; with ``ensemble`` also their average (in ``mode``)."""
    if mode not in MODES:
        raise CnnkitError(f"expected --ensemble-mode in {', '.join(MODES)}, found {mode!r}")
    if len(runs) > 1 and not ensemble:
        raise CnnkitError(f"expected one run, found {len(runs)}; pass --ensemble to combine them")
    members = [load_member(r, device) for r in runs]
    if tta:
        ref = members[0].cfg.data
        check_flips(data or ref.name, ref.hflip if data is None else None)
    ev = load_eval_set(members, data, split, data_dir)
    preds = [predict_member(m, ev, tta, mode) for m in members]
    combined = {variant: combine([p[variant] for p in preds], mode) for variant in preds[0]} if ensemble else None
    return Evaluation(ev, [str(r) for r in runs], preds, combined, mode)
