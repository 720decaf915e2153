"""A network described as data: a YAML layer list, in the spirit of Caffe's prototxt and MatConvNet's layer arrays.

::

    name: lenet5-spec
    description: LeNet-5 (LeCun et al. 1998) as a layer list
    input: [1, 28, 28]            # C, H, W the layer sizes are computed for (the model's default_input)
    mean: [0.5]                   # per-channel preprocessing on 0–1 pixels (or: imagenet)
    std: [0.5]
    num_classes: 10               # width of the last fc unless create_model(num_classes=...) says otherwise
    layers:
      - {type: conv, name: c1, out: 6, kernel: 5, padding: 2}
      - {type: tanh}
      - {type: pool, mode: avg, kernel: 2}
      - {type: flatten}
      - {type: fc, out: 84}
      - {type: fc}                # the last fc is the classifier: out = num_classes
      - {type: softmax}           # optional marker: forward returns logits (losses apply the softmax)

Layer types and their options (defaults in brackets): ``conv`` out, kernel, stride [1], padding [0],
dilation [1], groups [1], bias [true]; ``pool`` mode max|avg [max], kernel, stride [kernel], padding [0],
ceil [false], global [false]; ``relu``, ``sigmoid``, ``tanh``; ``lrn`` size [5], alpha [1e-4], beta [0.75],
k [2] (the paper's constants); ``batchnorm`` eps [1e-5]; ``dropout`` p [0.5]; ``flatten``; ``fc`` out
[num_classes], bias [true]; ``softmax``. Every layer may have a ``name`` (default: type and a count).

Layers before the first ``flatten`` are ``features``, the rest up to the last fc ``pre_logits``, the last fc
``fc``: the model contract of :class:`cnnkit.models.Classifier`. ``create_model("path/to/net.yaml")`` builds
it (a bare file name is also looked up among the bundled specs in ``cnnkit/configs/specs``).
"""

from __future__ import annotations

import difflib
import functools
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from torch import Tensor, nn

from ..conv.ops import formula, rounded_size
from ..errors import CnnkitError
from ..layers import lrn
from ._contract import IMAGENET_MEAN, IMAGENET_STD, Classifier
from ._registry import ModelInfo

SPEC_DIR = Path(__file__).resolve().parent.parent / "configs" / "specs"
TOP_KEYS = {"name", "description", "input", "mean", "std", "num_classes", "layers"}
OPTIONS: dict[str, dict[str, Any]] = {
    "conv": {"out": None, "kernel": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1, "bias": True},
    "pool": {"mode": "max", "kernel": None, "stride": None, "padding": 0, "ceil": False, "global": False},
    "relu": {},
    "sigmoid": {},
    "tanh": {},
    "lrn": {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0},
    "batchnorm": {"eps": 1e-5},
    "dropout": {"p": 0.5},
    "flatten": {},
    "fc": {"out": None, "bias": True},
    "softmax": {},
}
REQUIRED = {"conv": ("out", "kernel")}


@dataclass
class Spec:
    """A parsed, validated layer list. ``layers``: one dict per layer with ``type``, ``name`` and all options."""

    name: str
    description: str
    input: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    layers: list[dict[str, Any]] = field(default_factory=list)
    path: str = ""


# ---- reading -------------------------------------------------------------------------------------------------------
def resolve_spec_path(name: str | Path) -> Path:
    """The file for ``name``: as given, else a bundled spec of that file name."""
    path = Path(name)
    if path.is_file():
        return path
    bundled = SPEC_DIR / path.name
    if bundled.is_file():
        return bundled
    have = ", ".join(sorted(p.name for p in SPEC_DIR.glob("*.y*ml"))) or "none"
    raise CnnkitError(f"expected a layer-list YAML file, found nothing at {str(name)!r}; bundled specs: {have}")


def _unknown(key: str, allowed, where: str) -> CnnkitError:
    close = difflib.get_close_matches(key, list(allowed), n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(sorted(allowed))}"
    return CnnkitError(f"expected a known key in {where}, found {key!r}; {hint}")


def load_spec(path: str | Path) -> Spec:
    """Read and validate a layer-list YAML file.

    Raises:
        CnnkitError: for a missing file, bad YAML, unknown keys or types (with a did-you-mean), missing options.
    """
    path = resolve_spec_path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise CnnkitError(f"expected valid YAML in {str(path)!r}, found {str(e).splitlines()[0]}") from None
    except UnicodeDecodeError as e:
        raise CnnkitError(
            f"expected UTF-8 text in {str(path)!r}, found byte {e.object[e.start]:#04x} at {e.start}"
        ) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("layers"), list) or not raw["layers"]:
        raise CnnkitError(
            f"expected a mapping with a non-empty 'layers' list in {str(path)!r}, found {type(raw).__name__}"
        )
    for key in raw:
        if key not in TOP_KEYS:
            raise _unknown(key, TOP_KEYS, str(path))
    c, h, w = _input(raw.get("input", [3, 224, 224]), path)
    mean, std = _stats(raw, c, path)
    layers = _layers(raw["layers"], path)
    return Spec(
        name=str(raw.get("name", path.stem)),
        description=str(raw.get("description", f"layer list {path.name}")),
        input=(c, h, w),
        mean=mean,
        std=std,
        num_classes=_num_classes(raw, layers, path),
        layers=layers,
        path=str(path),
    )


def _input(value: Any, path: Path) -> tuple[int, int, int]:
    if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, int) and v > 0 for v in value)):
        raise CnnkitError(f"expected 'input: [C, H, W]' with positive integers in {str(path)!r}, found {value!r}")
    return tuple(value)  # type: ignore[return-value]


def _stats(raw: dict, c: int, path: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean, std = raw.get("mean", [0.5] * c), raw.get("std", [0.5] * c)
    mean = IMAGENET_MEAN if mean == "imagenet" else mean
    std = IMAGENET_STD if std == "imagenet" else std
    for key, v in (("mean", mean), ("std", std)):
        numbers = isinstance(v, (list, tuple)) and v and all(_is_number(x) and math.isfinite(x) for x in v)
        if not numbers or (key == "std" and min(v) <= 0):
            sign = "positive " if key == "std" else ""
            raise CnnkitError(
                f"expected '{key}: [{sign}numbers, one per channel]' or imagenet in {str(path)!r}, found {v!r}"
            )
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _num_classes(raw: dict, layers: list[dict[str, Any]], path: Path) -> int:
    """``num_classes`` of the file, else the last fc's ``out``, else 10."""
    value = raw.get("num_classes")
    if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise CnnkitError(f"expected 'num_classes' to be an integer ≥ 1 in {str(path)!r}, found {value!r}")
    return value or [lyr for lyr in layers if lyr["type"] == "fc"][-1]["out"] or 10


def _layers(items: list, path: Path) -> list[dict[str, Any]]:
    """Fill defaults, check types and options, and name every layer (``conv1``, ``relu2``…)."""
    counts: dict[str, int] = {}
    layers = []
    for i, item in enumerate(items):
        where = f"layer {i + 1} of {path.name}"
        if not isinstance(item, dict) or "type" not in item:
            raise CnnkitError(f"expected {where} to be a mapping with a 'type', found {item!r}")
        kind = str(item["type"])
        if kind not in OPTIONS:
            raise _unknown(kind, OPTIONS, f"{where} (type)")
        for key in item:
            if key not in ("type", "name", *OPTIONS[kind]):
                raise _unknown(key, ["type", "name", *OPTIONS[kind]], f"{where} ({kind})")
        missing = [k for k in REQUIRED.get(kind, ()) if k not in item]
        if kind == "pool" and "kernel" not in item and not item.get("global"):
            missing.append("kernel")
        if missing:
            raise CnnkitError(f"expected {', '.join(missing)} in {where} ({kind}), found {item!r}; add it")
        _check_values(item, where)
        counts[kind] = counts.get(kind, 0) + 1
        name = str(item.get("name", f"{kind}{counts[kind]}"))
        if not name or "." in name or hasattr(nn.Sequential, name):
            raise CnnkitError(
                f"expected a layer name without '.' that is not a module attribute in {where}, found {name!r}"
            )
        layers.append({**OPTIONS[kind], **item, "name": name})
    _check_order(layers, path)
    return layers


def _check_values(item: dict[str, Any], where: str) -> None:
    """Sizes are positive integers (padding may be 0), pooling is max or avg, dropout p is in [0, 1)."""
    for key in ("out", "kernel", "stride", "padding", "dilation", "groups", "size"):
        v, low = item.get(key), 0 if key == "padding" else 1
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < low):
            raise CnnkitError(f"expected {key} to be an integer ≥ {low} in {where}, found {v!r}")
    if item.get("mode", "max") not in ("max", "avg"):
        raise CnnkitError(f"expected pool mode max or avg in {where}, found {item['mode']!r}")
    if not 0 <= float(item.get("p", 0)) < 1:
        raise CnnkitError(f"expected dropout p in [0, 1) in {where}, found {item['p']!r}")


def _check_order(layers: list[dict[str, Any]], path: Path) -> None:
    kinds = [lyr["type"] for lyr in layers]
    if "softmax" in kinds and kinds.index("softmax") != len(kinds) - 1:
        at = kinds.index("softmax") + 1
        raise CnnkitError(f"expected softmax only as the last layer of {path.name}, found it at position {at}")
    body = kinds[:-1] if kinds[-1] == "softmax" else kinds
    if not body or body[-1] != "fc":
        found = body[-1] if body else "nothing"
        raise CnnkitError(f"expected the last layer of {path.name} (before softmax) to be fc, found {found}")
    hidden = [lyr["name"] for lyr in layers[: len(body) - 1] if lyr["type"] == "fc" and lyr["out"] is None]
    if hidden:
        raise CnnkitError(f"expected 'out' on every fc but the last in {path.name}, found none on {', '.join(hidden)}")
    if "flatten" not in kinds or kinds.index("flatten") > kinds.index("fc"):
        raise CnnkitError(f"expected a flatten layer before the first fc in {path.name}; add '- {{type: flatten}}'")
    names = [lyr["name"] for lyr in layers]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CnnkitError(f"expected unique layer names in {path.name}, found {', '.join(dupes)} more than once")


# ---- shapes --------------------------------------------------------------------------------------------------------
def walk(spec: Spec, shape: tuple[int, int, int], num_classes: int) -> list[tuple[int, ...]]:
    """Per-image output shape of every layer for an input ``shape`` (C, H, W), PyTorch's floor rule.

    Raises:
        CnnkitError: naming the layer where the map shrinks to nothing or an fc gets a map (no flatten).
    """
    cur: tuple[int, ...] = shape
    out = []
    last_fc = max(i for i, lyr in enumerate(spec.layers) if lyr["type"] == "fc")
    for i, lyr in enumerate(spec.layers):
        cur = _step(lyr, cur, num_classes if i == last_fc else None, spec)
        out.append(cur)
    return out


def _step(lyr: dict[str, Any], cur: tuple[int, ...], classes: int | None, spec: Spec) -> tuple[int, ...]:
    kind, name = lyr["type"], lyr["name"]
    if kind in ("conv", "pool") and len(cur) != 3:
        raise CnnkitError(f"expected a C×H×W map into {name} ({kind}) of {spec.name}, found a flat {cur[0]}-vector")
    if kind == "conv":
        k, st, p, d = lyr["kernel"], lyr["stride"], lyr["padding"], lyr["dilation"]
        return (int(lyr["out"]), *(_size(n, k, st, p, lyr, spec, d) for n in cur[1:]))
    if kind == "pool":
        if lyr["global"]:
            return (cur[0], 1, 1)
        stride = lyr["stride"] or lyr["kernel"]
        return (cur[0], *(_size(n, lyr["kernel"], stride, lyr["padding"], lyr, spec, 1, lyr["ceil"]) for n in cur[1:]))
    if kind == "flatten":
        return (cur[0] * (cur[1] * cur[2] if len(cur) == 3 else 1),)
    if kind == "fc":
        if len(cur) != 1:
            found = "×".join(map(str, cur))
            raise CnnkitError(f"expected a flatten before {name} (fc) of {spec.name}, found a {found} map")
        return (int(lyr["out"] if classes is None else classes),)
    return cur


def _size(n: int, k: int, s: int, p: int, lyr: dict, spec: Spec, d: int = 1, ceil: bool = False) -> int:
    ke = d * (k - 1) + 1
    if n + 2 * p < ke:
        raise CnnkitError(
            f"layer {lyr['name']} ({lyr['type']}) of {spec.name} gets a {n}-wide map, found {formula(n, ke, s, p)}:"
            " the map shrinks to nothing; use a larger input, more padding or fewer downsampling layers"
        )
    return rounded_size(n, k, s, p, d, ceil)


# ---- modules -------------------------------------------------------------------------------------------------------
def make_layer(lyr: dict[str, Any], cur: tuple[int, ...], out: tuple[int, ...]) -> nn.Module:
    """One ``nn.Module`` for a spec layer whose input is ``cur`` and output ``out`` (per-image shapes)."""
    kind = lyr["type"]
    if kind == "conv":
        k, st, p, d, g = (lyr[key] for key in ("kernel", "stride", "padding", "dilation", "groups"))
        return nn.Conv2d(cur[0], out[0], k, st, p, d, g, bias=lyr["bias"])
    if kind == "pool":
        if lyr["global"]:
            return nn.AdaptiveAvgPool2d(1) if lyr["mode"] == "avg" else nn.AdaptiveMaxPool2d(1)
        pool = nn.MaxPool2d if lyr["mode"] == "max" else nn.AvgPool2d
        return pool(lyr["kernel"], lyr["stride"] or lyr["kernel"], lyr["padding"], ceil_mode=lyr["ceil"])
    if kind == "fc":
        return nn.Linear(cur[0], out[0], bias=lyr["bias"])
    if kind == "batchnorm":
        return nn.BatchNorm2d(cur[0], eps=lyr["eps"]) if len(cur) == 3 else nn.BatchNorm1d(cur[0], eps=lyr["eps"])
    if kind == "lrn":
        return lrn(lyr["size"], lyr["alpha"], lyr["beta"], lyr["k"])
    simple = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "flatten": nn.Flatten, "softmax": nn.Identity}
    return nn.Dropout(lyr["p"]) if kind == "dropout" else simple[kind]()


class SpecModel(Classifier):
    """A classifier built from a :class:`Spec`: ``features`` (up to flatten), ``pre_logits``, ``fc``."""

    def __init__(self, spec: Spec, *, num_classes: int | None = None, in_chans: int | None = None) -> None:
        num_classes = spec.num_classes if num_classes is None else num_classes
        in_chans = spec.input[0] if in_chans is None else in_chans
        super().__init__(num_classes=num_classes, in_chans=in_chans, mean=spec.mean, std=spec.std)
        self.spec, self.arch = spec, spec.name
        self.default_input = (in_chans, *spec.input[1:])
        shapes = walk(spec, self.default_input, num_classes)
        self.cut = cut = next(i for i, lyr in enumerate(spec.layers) if lyr["type"] == "flatten")
        last = max(i for i, lyr in enumerate(spec.layers) if lyr["type"] == "fc")
        before = [self.default_input, *shapes]
        self.flat_features = shapes[cut][0]
        mods = [(lyr["name"], make_layer(lyr, before[i], shapes[i])) for i, lyr in enumerate(spec.layers)]
        self.features = nn.Sequential(OrderedDict(mods[:cut]))
        self.pre_logits = nn.Sequential(OrderedDict(mods[cut:last]))
        self.num_features = before[last][0]
        self.fc = mods[last][1]
        self.fixed_input = not any(lyr["type"] == "pool" and lyr["global"] for lyr in spec.layers[:cut])
        self._fits: set[tuple[int, ...]] = {tuple(self.default_input)}

    def check_input(self, x: Tensor) -> None:
        """x: Tensor[N, C, H, W]; raise CnnkitError naming the layer if the spec does not fit (C, H, W)."""
        shape = tuple(x.shape[1:])
        if shape in self._fits:
            return
        if x.ndim != 4 or shape[0] != self.in_chans:
            return super().check_input(x)
        shapes = walk(self.spec, shape, self.num_classes)  # raises where the map shrinks to nothing
        if shapes[self.cut][0] != self.flat_features:
            raise CnnkitError(self._mismatch(shape, shapes))
        self._fits.add(shape)

    def _mismatch(self, shape: tuple[int, ...], shapes: list[tuple[int, ...]]) -> str:
        """Why a flattened map of another size does not fit the first fc."""
        own = walk(self.spec, self.default_input, self.num_classes)
        got_map, own_map = (shape, self.default_input) if self.cut == 0 else (shapes[self.cut - 1], own[self.cut - 1])
        first_fc = next(lyr["name"] for lyr in self.spec.layers if lyr["type"] == "fc")
        c, h, w = self.default_input
        dims = lambda t: "×".join(map(str, t))  # noqa: E731
        return (
            f"layer {first_fc} (fc) of {self.arch} expects {self.flat_features} = {dims(own_map)} features (from a"
            f" {c}×{h}×{w} input), found {dims(got_map)} = {shapes[self.cut][0]} from {dims(shape)}; resize the"
            f" images to {h}×{w} (`cnnkit explain {self.spec.path} --input {dims(shape)}` shows every layer)"
        )

    def forward_features(self, x: Tensor) -> Tensor:
        """x: Tensor[N, C, H, W] -> the map before flatten, Tensor[N, C', h, w]."""
        self.check_input(x)
        return self.features(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """x: Tensor[N, C', h, w] -> Tensor[N, num_features] (pre_logits) or Tensor[N, num_classes] logits."""
        x = self.pre_logits(x)
        return x if pre_logits else self.fc(x)

    def group_matcher(self) -> dict[str, list[str]]:
        """``stem`` up to the first pool, ``stage1``… between pools, ``head``; groups without parameters dropped."""
        groups: list[list[str]] = [[]]
        for name, m in self.features.named_children():
            if any(True for _ in m.parameters()):
                groups[-1].append(f"features.{name}")
            if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) and groups[-1]:
                groups.append([])
        named = {("stem" if i == 0 else f"stage{i}"): g for i, g in enumerate(g for g in groups if g)}
        return {**named, "head": ["pre_logits", "fc"]}


def build_spec_model(
    spec: Spec | str | Path,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
    dropout: float | None = None,
) -> SpecModel:
    """Build the classifier a spec describes (``num_classes``/``in_chans`` override the spec's)."""
    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    model = SpecModel(spec, num_classes=num_classes, in_chans=in_chans)
    for m in model.modules():
        if dropout is not None and isinstance(m, nn.Dropout):
            m.p = dropout
    return model


def spec_info(name: str) -> ModelInfo:
    """A registry entry for a layer-list file, so ``create_model("net.yaml", ...)`` and ``cnnkit train`` take it."""
    spec = load_spec(name)
    builder = functools.partial(build_spec_model, spec)
    functools.update_wrapper(builder, build_spec_model)
    return ModelInfo(name, "spec", spec.description, spec.input, builder)
