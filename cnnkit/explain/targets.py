"""What ``cnnkit explain`` explains: a registered model, a layer-list spec or a run directory, built on the meta
device (no weights allocated), and the groups a fine-tuning run kept frozen."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from ..errors import CnnkitError
from ..models import count_parameters, create_model, model_info, parameter_groups
from ..runcard import InputSpec, read_card
from .preflight import parse_input


def load_target(
    target: str, input_text: str | None = None, num_classes: int | None = None
) -> tuple[nn.Module, tuple[int, int, int], str]:
    """(model on the meta device, input C×H×W, label) for a registered name, a SPEC.yaml or a run directory."""
    path = Path(target)
    shape = parse_input(input_text) if input_text else None
    if path.is_dir():
        from ..tasks import build_from_card

        card = read_card(path)
        shape = shape or (card.input.channels, card.input.height, card.input.width)
        if num_classes and num_classes != card.num_classes:
            card = dataclasses.replace(card, num_classes=num_classes, classes=[str(i) for i in range(num_classes)])
        if shape[0] != card.input.channels:
            card = dataclasses.replace(card, input=InputSpec(shape[0], card.input.height, card.input.width))
        with torch.device("meta"):
            return build_from_card(card, path), shape, f"{card.model} (run {path.name}, task {card.task})"
    if path.is_file() and path.suffix == ".onnx":
        raise CnnkitError(
            f"expected a model name, a layer-list .yaml or a run directory, found the ONNX file {target!r}; explain"
            " the run it was exported from"
        )
    shape = shape or model_info(target).default_input
    with torch.device("meta"):
        return create_model(target, num_classes=num_classes, in_chans=shape[0]), shape, target


def explained_part(model: nn.Module) -> tuple[nn.Module, str, str]:
    """(what to trace, its dotted name, a note) for ``model``: the model itself (name and note ""), or, for a model
    whose ``explain_part`` names a submodule (torchvision's detectors, Mask R-CNN: their proposals, RoI heads and
    NMS have data-dependent shapes, so no meta-device pass goes through them), that part of it: images Tensor[N, C,
    H, W] -> the feature map the heads read."""
    name = getattr(model, "explain_part", None)
    if not name:
        return model, "", ""
    part = model.get_submodule(name)
    rest = count_parameters(model) - count_parameters(part)
    note = (
        f"explaining {name} (images -> the feature map its heads read) of this {type(model).__name__}; the rest"
        f" ({rest:,} parameters: proposals, RoI heads, NMS) works on data-dependent boxes and is not traced"
    )
    return part, name, note


def require_classifier(run: str | Path, command: str, why: str) -> None:
    """Refuse a run of another task than classify for ``command``, saying ``why`` (the commands that rebuild the
    run as a classifier: ``visualize``, ``visualize units``).

    Raises:
        CnnkitError: naming the run's task and what does explain it.
    """
    task = read_card(run).task
    if task != "classify":
        raise CnnkitError(
            f"expected a classify run for `cnnkit {command}` ({why}), found a {task} run; `cnnkit explain {run}`"
            " gives its layers, shapes and receptive fields"
        )


def frozen_groups(target: str) -> list[str]:
    """The groups a fine-tuning run kept frozen (``model.json``'s ``frozen_groups``); none for a model name."""
    path = Path(target)
    return list(read_card(path).frozen_groups) if path.is_dir() else []


def group_table(model: nn.Module, frozen: list[str]) -> str:
    """One line per ``group_matcher`` group: parameters and whether the run trained it."""
    lines = ["groups (stem to head):"]
    for group, params in parameter_groups(model).items():
        state = "frozen" if group in frozen else "trained"
        lines.append(f"  {group:<12} {sum(p.numel() for _, p in params):>12,}  {state}")
    return "\n".join(lines)
