"""Shape preflight: does a model take this input size, and if not, where does it break and what would fit?

:func:`preflight` runs one traced forward pass on the meta device (milliseconds, no weights touched).
Where a layer does not fit (a map shrunk to nothing, a fully connected layer expecting another flattened
size, the model's own fixed-size check, or with ``strict=True`` a conv/pool output size
``(N + 2P − F)/S + 1`` that is not whole), it raises a :class:`CnnkitError` naming the layer, showing the
arithmetic with the actual numbers, and listing the nearest input sizes that do fit, found by trying the
sizes around the requested one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from torch import nn

from ..conv.ops import nearest_sizes
from ..errors import CnnkitError
from .trace import ShapeError, run_traced

MAX_CHANNELS, MAX_SIDE = 4096, 16384  # beyond these the arithmetic alone would need gigabytes


def parse_input(text: str | Sequence[int]) -> tuple[int, int, int]:
    """``"3x224x224"`` / ``"3×224×224"`` / ``(3, 224, 224)`` -> ``(C, H, W)``; ``"224"`` is not enough (channels)."""
    if not isinstance(text, str):
        values = tuple(int(v) for v in text)
    else:
        parts = [p for p in re.split(r"[x×*, ]+", text.strip()) if p]
        values = tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else ()
    if len(values) != 3 or min(values) < 1:
        raise CnnkitError(f"expected an input size C×H×W such as 3x224x224, found {text!r}; give channels too")
    c, h, w = values
    if c > MAX_CHANNELS or max(h, w) > MAX_SIDE:
        raise CnnkitError(
            f"expected at most {MAX_CHANNELS} channels and {MAX_SIDE} pixels a side, found {c}×{h}×{w}; give a real"
            " input size"
        )
    return values  # type: ignore[return-value]


def fits(model: nn.Module, shape: tuple[int, ...], strict: bool = False) -> bool:
    """True when ``model`` runs on a ``Tensor[1, *shape]`` without a shape error."""
    try:
        run_traced(model, shape, strict=strict, record=False)
    except CnnkitError:
        return False
    return True


def nearest_fitting(model: nn.Module, shape: tuple[int, int, int], strict: bool = False, reach: int = 64) -> list:
    """The nearest smaller and larger input sizes (C, H + d, W + d) that fit, searching up to ``reach`` pixels."""
    c, h, w = shape
    found = nearest_sizes(h, lambda m: m + w - h >= 1 and fits(model, (c, m, m + w - h), strict), reach=reach)
    return [(c, m, m + w - h) for m in found]


def preflight(
    model: nn.Module, input_shape: str | Sequence[int] | None = None, *, strict: bool = False
) -> tuple[int, ...]:
    """Check that ``model`` takes ``input_shape`` (C, H, W; default ``model.default_input``).

    Args:
        model: any ``nn.Module`` (not modified; its weights are never read).
        input_shape: ``(C, H, W)`` or text like ``"3x224x224"``.
        strict: also refuse conv/pool layers whose output size is not a whole number (PyTorch floors it).

    Returns:
        The per-image output shape, e.g. ``(1000,)``.

    Raises:
        CnnkitError: naming the layer that does not fit, the arithmetic, and the nearest sizes that do.
    """
    shape = parse_input(input_shape if input_shape is not None else model.default_input)
    want = getattr(model, "default_input", shape)
    if shape[0] != want[0]:
        raise CnnkitError(
            f"expected {want[0]} input channel(s) for {type(model).__name__}, found {shape[0]} in"
            f" {'×'.join(map(str, shape))}; use {want[0]}×{shape[1]}×{shape[2]} or build the model with"
            f" in_chans={shape[0]}"
        )
    try:
        tracer = run_traced(model, shape, strict=strict, record=True)
    except CnnkitError as e:
        if isinstance(e, ShapeError) and not e.spatial:
            raise
        raise CnnkitError(f"{e}; {_advice(model, shape, strict)}") from None
    last = [c for c in tracer.calls if c.output is not None]
    return tuple(last[-1].output.shape[1:]) if last else shape


def _advice(model: nn.Module, shape: tuple[int, int, int], strict: bool) -> str:
    near = nearest_fitting(model, shape, strict)
    if not near:
        return f"no input size within 64 pixels of {shape[1]}×{shape[2]} fits; check the channels and the layer sizes"
    sizes = " or ".join("×".join(map(str, s)) for s in near)
    return f"nearest input sizes that fit: {sizes}"
