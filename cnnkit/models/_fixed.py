"""Paper-exact models with fixed fully connected sizes: a wrong input size is an error that shows the arithmetic.

The message walks the layers that change the spatial size with the output-size formula
``out = (in + 2·pad − kernel)/stride + 1``, once for the size the model needs and once for the size it got::

    alexnet needs 3×227×227 (its fully connected sizes are fixed): conv1 (227 − 11)/4 + 1 = 55,
    pool1 (55 − 3)/2 + 1 = 27, pool2 (27 − 3)/2 + 1 = 13, pool3 (13 − 3)/2 + 1 = 6 -> 6×6×256 into the first
    FC layer; found 3×224×224: conv1 (224 − 11)/4 + 1 = 54.25 -> 54, ... -> 5×5×256; resize the images to 227×227
"""

from __future__ import annotations

from torch import Tensor, nn

from ..conv.ops import exact_size, rounded_size
from ..errors import CnnkitError

Step = tuple[str, int, int, int, bool]  # label, kernel, stride, padding, ceil_mode


def _first(v: int | tuple[int, ...]) -> int:
    return v if isinstance(v, int) else v[0]


def size_steps(features: nn.Module) -> list[Step]:
    """The layers of ``features`` that change the spatial size, in order, as (label, kernel, stride, pad, ceil).

    Named layers keep their names (``conv1``, ``pool2``); numbered ones are called CONVi / POOLi.
    """
    steps: list[Step] = []
    count = {"CONV": 0, "POOL": 0}
    for name, m in features.named_modules():
        kind = "CONV" if isinstance(m, nn.Conv2d) else "POOL" if isinstance(m, nn.MaxPool2d | nn.AvgPool2d) else ""
        if not kind:
            continue
        count[kind] += 1
        k, s, p = _first(m.kernel_size), _first(m.stride), _first(m.padding)
        if s == 1 and k - 2 * p == 1:
            continue  # keeps the size
        leaf = name.rsplit(".", 1)[-1]
        label = leaf if not leaf.isdigit() else f"{kind}{count[kind]}"
        steps.append((label, k, s, p, bool(getattr(m, "ceil_mode", False))))
    return steps


def trace(steps: list[Step], size: int) -> tuple[str, int]:
    """The arithmetic of ``steps`` applied to ``size``, and the size PyTorch ends with (it rounds fractions)."""
    parts = []
    for label, k, s, p, ceil in steps:
        exact, out = exact_size(size, k, s, p), rounded_size(size, k, s, p, ceil=ceil)
        value = str(exact) if exact.denominator == 1 else f"{float(exact):g} -> {out}"
        parts.append(f"{label} ({size}{f' + 2·{p}' if p else ''} − {k})/{s} + 1 = {value}")
        size = out
    return ", ".join(parts), size


def fixed_size_message(arch: str, features: nn.Module, want: tuple[int, int, int], got: tuple[int, ...]) -> str:
    """Explain why input ``got`` (C, H, W) does not fit a model that needs ``want`` (C, H, W)."""
    steps = size_steps(features)
    want_trace, want_out = trace(steps, want[1])
    channels = [m.out_channels for m in features.modules() if isinstance(m, nn.Conv2d)][-1]
    got_traces = []
    for dim, size in (("height", got[1]), ("width", got[2])):
        text, out = trace(steps, size)
        got_traces.append((dim, text, out))
    if got[1] == got[2]:
        found = f"{got_traces[0][1]} -> {got_traces[0][2]}×{got_traces[0][2]}×{channels}"
    else:
        found = "; ".join(f"{dim}: {text} -> {out}" for dim, text, out in got_traces)
    if got_traces[0][2] == got_traces[1][2] == want_out:
        found += " (the same FC input only through rounding: not the paper's geometry)"
    return (
        f"{arch} needs {want[0]}×{want[1]}×{want[2]} (its fully connected sizes are fixed): {want_trace}"
        f" -> {want_out}×{want_out}×{channels} into the first FC layer;"
        f" found {'×'.join(map(str, got))}: {found}; resize or crop the images to {want[1]}×{want[2]}"
    )


class FixedInput:
    """Mixin for paper-exact classifiers: ``check_input`` explains a wrong spatial size with the arithmetic.

    Put it first in the bases (``class AlexNet(FixedInput, Classifier)``); the model needs ``self.arch``
    (registered name) and ``self.features`` (the conv stack before the first FC layer).
    """

    fixed_input = True
    arch: str
    features: nn.Module
    default_input: tuple[int, int, int]

    def check_input(self, x: Tensor) -> None:
        """x: Tensor[N, C, H, W]; raise CnnkitError unless (C, H, W) == default_input."""
        want = self.default_input
        if x.ndim == 4 and x.shape[1] == want[0] and tuple(x.shape[2:]) != want[1:]:
            raise CnnkitError(fixed_size_message(self.arch, self.features, want, tuple(x.shape[1:])))
        super().check_input(x)  # type: ignore[misc]  # channels and rank
