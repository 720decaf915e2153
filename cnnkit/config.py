"""The single typed schema for a run: dataclasses, YAML presets and ``--set a.b=v`` overrides.

``Config`` is what a run directory's ``config.yaml`` holds. A YAML file or an override may only name
fields that exist; an unknown key fails with a did-you-mean suggestion, and a value of the wrong type
fails with the expected type.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import CnnkitError
from .io import parse_yaml, read_yaml, short


@dataclass
class TaskConfig:
    name: str = "classify"  # classify | localize: what the network learns (see `cnnkit.tasks`)
    box_loss: str = "smooth_l1"  # localize: smooth_l1 | giou (on the normalised box) | both
    box_weight: float = 1.0  # localize: weight of the box term beside the class cross-entropy
    metric_loss: str = "triplet"  # verify: triplet (semi-hard negatives mined in the batch, FaceNet) | contrastive
    margin: float | None = None  # verify: the loss's margin (default: triplet 0.2, contrastive 1.0)
    embedding_dim: int = 128  # verify: the embedding's width
    # verify: training identities held out for the validation pairs (threshold, best epoch), so both are chosen on
    # identities the model never saw; default: 10 % of them when there are 20 or more, else none (held-out images
    # of the training identities)
    val_identities: int | None = None


@dataclass
class DataConfig:
    name: str = "fashion-mnist"  # fashion-mnist | digits | a folder path
    data_dir: str | None = None  # where to look for (and cache) named datasets
    val_fraction: float = 0.1  # carved from train, seeded and stratified
    test_fraction: float = 0.2  # only for folders without a test/ split
    image_size: int | None = None  # resize folder images (default: the model's input size)
    skip_bad: bool = False  # skip unreadable images (listed in skipped_files.txt) instead of stopping
    num_workers: int = 0  # DataLoader workers for folder datasets
    download: bool = True  # allow downloading named datasets that aren't found locally
    augment: str = "auto"  # auto | none | digits | clothes | photos | randaugment | trivialaugment
    hflip: bool | None = None  # may images be mirrored (augmentation, flip TTA)? default: not digits, yes otherwise
    mixup: float = 0.0  # MixUp probability per batch (Beta(1, 1) mixing); 0 = off
    cutmix: float = 0.0  # CutMix probability per batch; 0 = off


@dataclass
class ModelConfig:
    name: str | None = None  # a registered name (`cnnkit models`) or a layer-list YAML file; default: the task's
    dropout: float | None = None  # set the rate of every Dropout layer
    init: str = "default"  # default | xavier | kaiming | normal | zeros (zeros shows the broken symmetry)
    aux_weight: float = 0.3  # weight of auxiliary classifier losses (GoogLeNet, Inception) during training
    pretrained: bool = False  # start from the model's published ImageNet weights (`cnnkit.models.pretrained`)
    weights: str | None = None  # start from a local state dict (.safetensors/.pt/.pth) instead; init is then skipped
    freeze: str = "none"  # groups kept frozen: none | all-but-head | N (the first N groups) | stem,stage1,…
    freeze_bn: bool = False  # keep pretrained BatchNorm statistics (all groups but the head) while fine-tuning


@dataclass
class OptimConfig:
    name: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4  # L2, applied to weights only (not biases or norm parameters)
    schedule: str = "onecycle"  # constant | step | cosine | onecycle
    warmup_epochs: float = 0.0  # linear warm-up (onecycle defaults to 25 % of the steps)
    step_epochs: int = 10  # step schedule: multiply the rate by gamma every step_epochs
    gamma: float = 0.1
    l1: float = 0.0  # explicit L1 penalty on weights, added to the loss
    clip_grad_norm: float | None = None  # clip the global gradient norm
    backbone_lr_mult: float = 0.1  # pretrained runs: learning rate of every group but the head, times optim.lr


@dataclass
class TrainConfig:
    epochs: int = 5
    batch_size: int | str = 128  # images per step; 1 = stochastic, "full" = batch gradient descent
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (autocast; fp16 with a GradScaler). auto: bf16 where native
    channels_last: bool = True
    label_smoothing: float = 0.0
    class_weights: str = "none"  # none | balanced (weights inversely proportional to class frequency)
    monitor: str | None = None  # selects the best epoch; default: the task's (classify: val_accuracy)
    early_stop_patience: int | None = None  # stop after this many epochs without improvement
    on_nonfinite: str = "stop"  # stop | skip: what a NaN/inf loss or gradient does
    save_every_steps: int | None = None  # also checkpoint inside epochs (exact mid-epoch resume)
    tensorboard: bool = True  # write TensorBoard events when the tensorboard package is installed
    report: bool = True  # write report.html / report.md (test-split metrics, plots) when training ends
    report_units: bool = True  # classify: that report shows what an early and the last conv layer learned (1-2 s)
    out: str | None = None  # run directory (default runs/<model>-<data>-<time>)
    head_epochs: int = 0  # pretrained runs: first train only the head (body frozen) this many epochs, then all


@dataclass
class Config:
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Allowed ranges of the numeric fields: key -> (low, high, low_inclusive, high_inclusive); None = unbounded.
RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "task.box_weight": (0, None, True, True),
    "task.margin": (0, None, False, True),
    "task.embedding_dim": (1, 65536, True, True),
    "task.val_identities": (0, None, True, True),
    "data.val_fraction": (0, 1, True, False),
    "data.test_fraction": (0, 1, True, False),
    "data.image_size": (1, 16384, True, True),
    "data.num_workers": (0, 256, True, True),
    "data.mixup": (0, 1, True, True),
    "data.cutmix": (0, 1, True, True),
    "model.dropout": (0, 1, True, False),
    "model.aux_weight": (0, None, True, True),
    "optim.lr": (0, None, True, True),  # 0 is allowed: a run that shows what no learning looks like
    "optim.momentum": (0, 1, True, False),
    "optim.weight_decay": (0, None, True, True),
    "optim.warmup_epochs": (0, None, True, True),
    "optim.step_epochs": (1, None, True, True),
    "optim.gamma": (0, None, False, True),
    "optim.l1": (0, None, True, True),
    "optim.clip_grad_norm": (0, None, False, True),
    "optim.backbone_lr_mult": (0, None, True, True),
    "train.epochs": (1, None, True, True),
    "train.seed": (0, 2**63 - 1, True, True),
    "train.label_smoothing": (0, 1, True, False),
    "train.early_stop_patience": (1, None, True, True),
    "train.save_every_steps": (1, None, True, True),
    "train.head_epochs": (0, None, True, True),
}


def _interval(low: float | None, high: float | None, low_in: bool, high_in: bool) -> str:
    left = "-∞" if low is None else f"{low:g}"
    right = "∞" if high is None else f"{high:g}"
    return f"{'[' if low_in and low is not None else '('}{left}, {right}{']' if high_in and high is not None else ')'}"


def check_ranges(cfg: Config) -> Config:
    """Every numeric value within its allowed range (:data:`RANGES`), before anything is loaded."""
    for key, (low, high, low_in, high_in) in RANGES.items():
        section, _, name = key.partition(".")
        value = getattr(getattr(cfg, section), name)
        if value is None or isinstance(value, str):  # unset optionals; batch_size "full"
            continue
        below = low is not None and (value < low if low_in else value <= low)
        above = high is not None and (value > high if high_in else value >= high)
        if below or above or value != value:  # value != value: NaN
            raise CnnkitError(
                f"config key {key!r} expects a value in {_interval(low, high, low_in, high_in)}, found {short(value)}"
            )
    bs = cfg.train.batch_size
    if bs != "full" and (not isinstance(bs, int) or isinstance(bs, bool) or bs < 1):
        raise CnnkitError(f"expected train.batch_size a positive integer or 'full', found {short(bs)}")
    return cfg


def _fields(obj: Any) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(obj)}


def _unknown_key(key: str, known: typing.Iterable[str]) -> CnnkitError:
    close = difflib.get_close_matches(key.split(".")[-1], list(known), n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(sorted(known))}"
    return CnnkitError(f"unknown config key {key!r}; {hint}")


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against a field's type (``int``, ``float``, ``str``, ``bool``, ``X | None``)."""
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in allowed:
        return None
    for t in allowed:
        if t is float and isinstance(value, (int, str)) and not isinstance(value, bool):
            try:
                return float(value)  # YAML reads "1e-3" as a string
            except ValueError:
                continue
        if t is not type(None) and type(value) is t:
            return value
        if t is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
    raise CnnkitError(f"config key {key!r} expects {names}, found {short(value)}; fix the value")


def apply(cfg: Config, updates: dict[str, Any], prefix: str = "") -> Config:
    """Merge a nested dict of updates into ``cfg`` in place (validated); returns ``cfg``."""
    for section, values in updates.items():
        fields = _fields(cfg)
        if section not in fields:
            raise _unknown_key(prefix + section, fields)
        if not isinstance(values, dict):
            raise CnnkitError(f"config section {prefix + section!r} expects a mapping, found {short(values)}")
        sub = getattr(cfg, section)
        hints = typing.get_type_hints(type(sub))
        for key, value in values.items():
            if key not in hints:
                raise _unknown_key(f"{section}.{key}", hints)
            setattr(sub, key, _coerce(f"{section}.{key}", value, hints[key]))
    return cfg


def parse_set(items: typing.Iterable[str]) -> dict[str, dict[str, Any]]:
    """``["train.epochs=3", "optim.lr=0.1"]`` -> ``{"train": {"epochs": 3}, "optim": {"lr": 0.1}}`` (YAML-typed)."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise CnnkitError(f"expected --set SECTION.KEY=VALUE (e.g. train.epochs=3), found {item!r}")
        out.setdefault(section, {})[name] = parse_yaml(raw, f"--set {short(item)}") if raw.strip() else None
    return out


RECIPES = Path(__file__).parent / "configs"


def recipes() -> list[str]:
    """Names of the built-in recipes (``cnnkit/configs/NAME.yaml``)."""
    return sorted(p.stem for p in RECIPES.glob("*.yaml"))


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML recipe, by path or built-in name; a clear error for a missing file or bad YAML."""
    p = Path(path)
    if not p.is_file() and str(path) in recipes():
        p = RECIPES / f"{path}.yaml"
    if not p.is_file():
        raise CnnkitError(
            f"expected a YAML config file or a built-in recipe ({', '.join(recipes())}), found no file at {str(p)!r}"
        )
    data = read_yaml(p) or {}
    if not isinstance(data, dict):
        raise CnnkitError(f"expected a mapping of sections in {str(p)!r}, found {type(data).__name__}")
    return data


def build_config(files: typing.Iterable[str] = (), sets: typing.Iterable[str] = (), **flags: Any) -> Config:
    """Defaults <- the task's recipe <- YAML files (in order) <- ``--set`` overrides <- explicit CLI flags
    (``section__key=value``). A task other than classify has its own defaults in ``configs/tasks/NAME.yaml``."""
    files, sets = list(files), list(sets)
    cfg = _merge(Config(), files, sets, flags)
    recipe = RECIPES / "tasks" / f"{cfg.task.name}.yaml"
    cfg = _merge(apply(Config(), load_yaml(recipe)), files, sets, flags) if recipe.is_file() else cfg
    return check_ranges(cfg)


def _merge(cfg: Config, files: list[str], sets: list[str], flags: dict[str, Any]) -> Config:
    for f in files:
        apply(cfg, load_yaml(f))
    apply(cfg, parse_set(sets))
    explicit: dict[str, dict[str, Any]] = {}
    for flag, value in flags.items():
        if value is not None:
            section, _, key = flag.partition("__")
            explicit.setdefault(section, {})[key] = value
    return apply(cfg, explicit)


def from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a ``Config`` from ``to_dict()`` output (e.g. a run's ``config.yaml``)."""
    return check_ranges(apply(Config(), data))


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
