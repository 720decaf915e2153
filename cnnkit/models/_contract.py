"""The model contract: what every classifier from ``create_model`` answers.

A cnnkit classifier is an ``nn.Module`` with

- ``num_classes``, ``num_features`` (width of the pre-logits features the final linear layer reads),
  ``default_input`` (channels, height, width), ``mean`` and ``std`` (per input channel, on 0–1 pixels);
- ``forward_features(x)`` -> unpooled feature map ``Tensor[N, num_features, h, w]``
  (or ``Tensor[N, num_features]`` for models whose features are already flat, such as paper-exact FC stacks);
- ``forward_head(x, pre_logits=False)`` -> ``Tensor[N, num_classes]`` logits, or the pooled
  ``Tensor[N, num_features]`` when ``pre_logits`` is true;
- ``reset_classifier(num_classes)`` -> a fresh head of the new width;
- ``group_matcher()`` -> ordered ``{group: [module prefixes]}`` from stem to head, used for freezing
  and per-group learning rates. Every parameter belongs to exactly one group.

Models written here subclass :class:`Classifier`; wrappers around torchvision models mix it in, so
module names stay torchvision's and its checkpoints load.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..errors import CnnkitError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def channel_stats(in_chans: int, mean: Sequence[float], std: Sequence[float]) -> tuple[tuple, tuple]:
    """Per-channel mean/std for ``in_chans`` channels: averaged for grayscale, repeated otherwise."""
    if len(mean) == in_chans:
        return tuple(mean), tuple(std)
    if in_chans == 1:
        return (sum(mean) / len(mean),), (sum(std) / len(std),)
    return tuple(mean[i % len(mean)] for i in range(in_chans)), tuple(std[i % len(std)] for i in range(in_chans))


class Classifier(nn.Module):
    """Base class giving the contract's shared parts; subclasses build ``features`` and the head."""

    default_input: tuple[int, int, int] = (3, 224, 224)
    fixed_input: bool = False  # paper-exact: fixed fully connected sizes need exactly default_input
    num_classes: int
    num_features: int

    def __init__(self, *, num_classes: int, in_chans: int, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if num_classes < 1 or in_chans < 1:
            raise CnnkitError(
                f"expected num_classes >= 1 and in_chans >= 1, found num_classes={num_classes}, in_chans={in_chans}"
            )
        self.num_classes = num_classes
        self.mean, self.std = channel_stats(in_chans, mean, std)
        self.default_input = (in_chans, *type(self).default_input[1:])

    @property
    def in_chans(self) -> int:
        return self.default_input[0]

    def check_input(self, x: Tensor) -> None:
        """Raise a clear error when a fixed-size model gets another input size. x: Tensor[N, C, H, W]."""
        want = self.default_input
        if x.ndim != 4 or x.shape[1] != want[0] or (self.fixed_input and tuple(x.shape[2:]) != want[1:]):
            c, h, w = want
            found = "×".join(map(str, x.shape[1:])) if x.ndim == 4 else f"a {x.ndim}-d tensor of shape {tuple(x.shape)}"
            raise CnnkitError(
                f"expected input N×{c}×{h}×{w} for {type(self).__name__}"
                f"{' (its fully connected sizes are fixed)' if self.fixed_input else ''}, found N×{found};"
                f" resize the images to {h}×{w} with {c} channel(s)"
            )

    def forward_features(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh final layer ``self.fc`` of width ``num_classes`` (0: a headless backbone); others override."""
        self.num_classes = num_classes
        self.fc = linear_head(self.num_features, num_classes)

    def group_matcher(self) -> dict[str, list[str]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """x: Tensor[N, C, H, W] normalised images -> Tensor[N, num_classes] logits."""
        return self.forward_head(self.forward_features(x))


class AuxOutput(NamedTuple):
    """What ``forward`` returns in training mode for a model built with auxiliary classifiers.

    The convention: ``model(x)`` is a plain ``Tensor[N, num_classes]`` of logits, except in training mode
    for a model built with ``aux_logits=True`` (GoogLeNet, Inception-v3), where it is
    ``AuxOutput(logits, aux)``. A trainer calls :func:`split_aux` on every output and adds the auxiliary
    losses with a weight of its choosing: 0.3 per head in the GoogLeNet paper (Szegedy et al. 2014),
    0.4 in torchvision's Inception-v3 recipe. In eval mode the auxiliary heads are not run.

    Attributes:
        logits: Tensor[N, num_classes] from the main head.
        aux: one Tensor[N, num_classes] per auxiliary head, from the stem side to the head side.
    """

    logits: Tensor
    aux: list[Tensor]


def split_aux(output: Tensor | AuxOutput) -> tuple[Tensor, list[Tensor]]:
    """``(logits, aux_logits)`` from a model output; ``aux_logits`` is empty for a plain Tensor."""
    if isinstance(output, AuxOutput):
        return output.logits, list(output.aux)
    return output, []


def parameter_groups(model: nn.Module) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """Resolve ``model.group_matcher()`` to named parameters, in group order.

    Raises:
        CnnkitError: if a parameter matches no group or more than one.
    """
    groups = model.group_matcher()
    out: dict[str, list[tuple[str, nn.Parameter]]] = {g: [] for g in groups}
    for name, p in model.named_parameters():
        hits = [g for g, prefixes in groups.items() if any(name == q or name.startswith(q + ".") for q in prefixes)]
        if len(hits) != 1:
            raise CnnkitError(
                f"expected parameter {name!r} of {type(model).__name__} in exactly one group, found {hits or 'none'};"
                " fix the model's group_matcher()"
            )
        out[hits[0]].append((name, p))
    return out


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (works on meta-device models too)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def linear_head(num_features: int, num_classes: int) -> nn.Module:
    """A fresh linear head; ``nn.Identity`` for ``num_classes == 0`` (headless backbone)."""
    return nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()


def pool_flat(x: Tensor) -> Tensor:
    """Global average pool: Tensor[N, C, H, W] -> Tensor[N, C]; flat inputs pass through."""
    return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1) if x.ndim == 4 else x
