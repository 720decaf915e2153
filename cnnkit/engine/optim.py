"""Optimisers and learning-rate schedules from the config's ``optim`` section."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..config import OptimConfig
from ..errors import CnnkitError

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "warmup_cosine")
# Old names kept working. ``onecycle`` was never Smith's one-cycle policy (no momentum cycle, no final annealing
# below the start): it is linear warm-up + cosine, so it is an alias of ``warmup_cosine``.
SCHEDULE_ALIASES = {"onecycle": "warmup_cosine"}


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two parameter groups: weights (ndim > 1) get L2 weight decay; biases and norm parameters don't."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: OptimConfig, groups: list[dict] | None = None) -> torch.optim.Optimizer:
    """The optimizer ``cfg.name`` over ``groups`` (torch parameter groups, e.g. per-group learning rates from
    ``cnnkit.transfer``), by default :func:`decay_groups`."""
    groups = decay_groups(model, cfg.weight_decay) if groups is None else groups
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    raise CnnkitError(f"expected optim.name one of {', '.join(OPTIMIZERS)}, found {cfg.name!r}")


def lr_factor(schedule: str, step: int, total: int, warmup: int, step_size: int = 0, gamma: float = 0.1) -> float:
    """Multiplier of the base learning rate at optimizer ``step`` of ``total`` (linear warm-up first).

    ``step`` multiplies by ``gamma`` every ``step_size`` steps; ``cosine`` anneals to 0; ``warmup_cosine`` warms
    up linearly over 25 % of the steps unless ``warmup`` is given, then anneals with a cosine to 0. ``onecycle``
    is an old alias of ``warmup_cosine`` (not ``torch.optim.lr_scheduler.OneCycleLR``: no momentum cycle).
    """
    schedule = SCHEDULE_ALIASES.get(schedule, schedule)
    if schedule not in SCHEDULES:
        names = ", ".join([*SCHEDULES, *SCHEDULE_ALIASES])
        raise CnnkitError(f"expected optim.schedule one of {names}, found {schedule!r}")
    if schedule == "warmup_cosine" and warmup == 0:
        warmup = max(1, round(0.25 * total))
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        return gamma ** ((step - warmup) // max(1, step_size))
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def build_scheduler(opt: torch.optim.Optimizer, cfg: OptimConfig, steps_per_epoch: int, epochs: int):
    """A per-step ``LambdaLR`` following :func:`lr_factor`."""
    total = steps_per_epoch * epochs
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    size = cfg.step_epochs * steps_per_epoch
    lr_factor(cfg.schedule, 0, total, warmup)  # validates the name before training starts
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg.schedule, s, total, warmup, size, cfg.gamma))


def weight_params(model: nn.Module) -> list[nn.Parameter]:
    """The trainable weights an L1 or L2 penalty applies to: tensors of 2 or more dimensions (not biases, norms)."""
    return [p for p in model.parameters() if p.ndim > 1 and p.requires_grad]


def l1_penalty(params: list[nn.Parameter]) -> Tensor:
    """Σ |w| over ``params``: the notes' L1 regularisation, added to the loss times ``optim.l1``."""
    return torch.stack([p.abs().sum() for p in params]).sum() if params else torch.zeros(())
