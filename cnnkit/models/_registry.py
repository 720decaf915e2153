"""The model registry: ``register_model``, ``list_models``, ``create_model``, ``model_info``.

Each family file registers keyword-only builders::

    @register_model(family="LeNet", paper="LeCun et al. 1998", default_input=(1, 28, 28))
    def lenet5(*, num_classes: int = 10, in_chans: int = 1) -> LeNet5: ...

Duplicate names raise, as torchvision's ``register_model`` does.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import CnnkitError
from ._contract import count_parameters


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model name without building it."""

    name: str
    family: str
    paper: str
    default_input: tuple[int, int, int]
    builder: Callable[..., nn.Module]

    def parameters(self, num_classes: int | None = None) -> int:
        """Parameter count (for ``num_classes`` outputs, else the builder's default), on the meta device."""
        with torch.device("meta"):
            model = self.builder(**({} if num_classes is None else {"num_classes": num_classes}))
        return count_parameters(model)


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    *, family: str, paper: str, default_input: tuple[int, int, int] = (3, 224, 224)
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers a builder under its function name."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if fn.__name__ in _REGISTRY:
            raise ValueError(f"model {fn.__name__!r} is already registered")
        _REGISTRY[fn.__name__] = ModelInfo(
            fn.__name__, family, paper, (default_input[0], default_input[1], default_input[2]), fn
        )
        return fn

    return wrap


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style ``pattern`` (``"resnet*"``), sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def model_info(name: str) -> ModelInfo:
    """The registry entry for ``name``; a did-you-mean error for unknown names.

    A name ending in ``.yaml``/``.yml`` is a layer-list file, built by ``cnnkit.models.spec``.
    """
    if name.endswith((".yaml", ".yml")):
        from .spec import spec_info  # lazy: the spec builder imports this module

        return spec_info(name)
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "run `cnnkit models` to list them."
        raise CnnkitError(f"expected a registered model name, found {name!r}; {hint}")
    return _REGISTRY[name]


def create_model(name: str, *, pretrained: bool = False, weights: str | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered model; keyword arguments that are ``None`` are ignored.

    Args:
        name: registered name, e.g. ``"lenet5"``.
        pretrained: load the weights listed for ``name`` in ``cnnkit.models.pretrained`` (ImageNet), then give
            it ``in_chans`` input channels and a fresh head for ``num_classes`` where those differ.
        weights: a local state dict (.safetensors/.pt/.pth) to load instead, loaded and adapted the same way.
        **kwargs: ``num_classes``, ``in_chans`` and family-specific options.
    """
    info = model_info(name)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}

    def build(**kw: Any) -> nn.Module:
        check_options(name, info.builder, kw)
        return info.builder(**kw)  # a TypeError from inside the builder is a bug: it propagates with its traceback

    if pretrained or weights is not None:
        from .pretrained import build_pretrained  # lazy: the table imports the model families

        return build_pretrained(name, build, weights, **kwargs)
    return build(**kwargs)


def check_options(name: str, builder: Callable[..., nn.Module], kwargs: dict[str, Any]) -> None:
    """Raise CnnkitError when ``builder``'s signature cannot take ``kwargs`` (checked by binding, not by calling)."""
    signature = inspect.signature(builder, follow_wrapped=False)  # a functools.partial: the options left to give
    try:
        signature.bind(**kwargs)
    except TypeError as e:
        takes = ", ".join(signature.parameters) or "no options"
        raise CnnkitError(
            f"expected options model {name!r} takes ({takes}), found {', '.join(sorted(kwargs))} ({e});"
            " check `cnnkit models`"
        ) from None


def model_rows(pattern: str = "*") -> list[dict]:
    """One dict per registered model: name, family, paper, parameters (default head), default_input."""
    rows = []
    for name in list_models(pattern):
        info = model_info(name)
        rows.append(
            {
                "name": name,
                "family": info.family,
                "paper": info.paper,
                "parameters": info.parameters(),
                "default_input": list(info.default_input),
            }
        )
    return rows
