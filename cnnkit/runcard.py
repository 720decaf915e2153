"""The run card: one typed owner of a run directory's ``model.json``.

Every stage that writes or reads ``model.json`` goes through :class:`RunCard` (``write_card``/``read_card``),
never through a raw dict. The card says what was trained (task, model name and build options, classes, input
and preprocessing), from what (the data source, the weights it started from, the frozen groups), how
(precision and why) and on which examples (``split``: the number of examples and a content hash per split;
the membership itself is in ``split.json`` next to it). ``schema`` is the card's version: a card written by an
older cnnkit (no ``schema`` key, always a classifier) is read with the defaults of its missing fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CnnkitError
from .io import read_json, write_json

SCHEMA = 2
CARD = "model.json"
SPLIT = "split.json"


@dataclass
class InputSpec:
    channels: int
    height: int
    width: int


@dataclass
class RunCard:
    """What ``model.json`` holds. ``preprocessing``: mode ("L"/"RGB"), resize [H, W], scale, mean, std (and for
    published weights resize_shorter, center_crop, interpolation). ``task_fields``: what the task adds."""

    model: str
    num_classes: int
    classes: list[str]
    input: InputSpec
    preprocessing: dict[str, Any]
    task: str = "classify"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    data: str = ""
    created: str = ""
    cnnkit_version: str = ""
    precision: str = "fp32"
    precision_reason: str = ""
    frozen_groups: list[str] = field(default_factory=list)
    head_epochs: int = 0
    freeze_bn: bool = False
    pretrained: dict[str, Any] | None = None
    split: dict[str, Any] = field(default_factory=dict)
    task_fields: dict[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any, where: str = CARD) -> RunCard:
        """Validate and build; a card that parses but holds the wrong content gets one line naming the field."""
        if not isinstance(d, dict):
            raise CnnkitError(f"expected a JSON object in {where}, found {type(d).__name__}; the run card is damaged")
        known = {f.name for f in dataclasses.fields(cls)}
        for key in ("model", "num_classes", "classes", "input", "preprocessing"):
            if d.get(key) is None:
                raise CnnkitError(f"expected the field {key!r} in {where}, found none; the run card is damaged")
        try:
            inp = InputSpec(**d["input"])
            card = cls(**{**{k: v for k, v in d.items() if k in known}, "input": inp})
        except TypeError as e:
            raise CnnkitError(f"expected a cnnkit run card in {where}, found {e}; the run card is damaged") from None
        card.check(where)
        return card

    def check(self, where: str = CARD) -> None:
        if not isinstance(self.classes, list) or len(self.classes) != self.num_classes:
            raise CnnkitError(
                f"expected {self.num_classes} class names in {where}, found {len(self.classes)}; the run card is"
                " damaged"
            )
        if min(self.input.channels, self.input.height, self.input.width) < 1:
            raise CnnkitError(f"expected a positive input size in {where}, found {self.input}")
        if self.schema > SCHEMA:
            raise CnnkitError(
                f"expected a run card of schema {SCHEMA} or older in {where}, found {self.schema}; upgrade cnnkit"
            )


def read_card(run_dir: str | Path) -> RunCard:
    """The run card of ``run_dir`` (a clear error when the directory or its card is missing or damaged)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        found = "a file" if run_dir.exists() else "nothing"
        onnx = ""
        if run_dir.suffix == ".onnx":
            onnx = "; an exported .onnx file goes to `cnnkit predict`, `serve` or `verify`"
        raise CnnkitError(
            f"expected a run directory, found {found} at {str(run_dir)!r}; pass the folder `cnnkit train` wrote{onnx}"
        )
    return RunCard.from_dict(read_json(run_dir / CARD), str(run_dir / CARD))


def write_card(run_dir: str | Path, card: RunCard) -> Path:
    return write_json(Path(run_dir) / CARD, card.to_dict())


def model_path(card: RunCard, run_dir: str | Path) -> str:
    """The model name to build: a layer-list spec saved with the run is read from the run directory."""
    return str(Path(run_dir) / card.model) if card.model == "model_spec.yaml" else card.model
