"""Per-layer summary of a model: output shape, parameters, MACs, activation memory and receptive field.

One row per call of a leaf module, in execution order (a module called twice, such as the ReLU shared by
a ResNet bottleneck, gives two rows), from one traced forward pass on the meta device (no weights are
touched and nothing is computed). Conventions:

- shapes are per image, written ``h×w×d`` as in the notes (``55×55×96``); flat outputs as ``4096``;
- MACs count conv and linear layers only (see :mod:`cnnkit.explain.trace`), so FLOPs ≈ 2 × MACs;
- memory is the bytes of the layer's output for one image (0 for in-place layers, which reuse their input);
- RF is the receptive-field size in input pixels, jump the effective stride, start the centre of the first
  output's field (input pixel i has centre i).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torch import Tensor, nn

from ..models._contract import count_parameters
from .trace import Call, Field, field_of, run_traced


@dataclass
class LayerRow:
    """One leaf-module call. ``rf``, ``jump`` and ``start`` are per axis (rows, columns)."""

    name: str
    kind: str
    detail: str
    shape: tuple[int, ...]
    params: int
    macs: int
    memory: int
    rf: tuple[float, float] | None
    jump: tuple[float, float] | None
    start: tuple[float, float] | None
    notes: list[str] = field(default_factory=list)


@dataclass
class Summary:
    """A model explained at one input size."""

    model: str
    input: tuple[int, ...]
    rows: list[LayerRow]
    params: int
    trainable: int
    output: tuple[int, ...]

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.rows)

    @property
    def memory(self) -> int:
        return sum(r.memory for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the rows and the totals."""
        totals = {"params": self.params, "trainable": self.trainable, "macs": self.macs, "memory": self.memory}
        return {
            "model": self.model,
            "input": list(self.input),
            "output": list(self.output),
            "layers": [asdict(r) for r in self.rows],
            "totals": totals,
        }


def summarize(model: nn.Module, input_shape: tuple[int, ...] | None = None, name: str | None = None) -> Summary:
    """Explain ``model`` for one ``input_shape`` (C, H, W; default ``model.default_input``).

    Raises:
        CnnkitError: when a layer does not fit the input (use :func:`cnnkit.explain.preflight` for the
            nearest sizes that do).
    """
    shape = tuple(input_shape or model.default_input)
    tracer = run_traced(model, shape)
    seen: set[int] = set()
    rows = [_row(c, seen) for c in tracer.calls if c.output is not None or c.macs]
    out = rows[-1].shape if rows else shape
    return Summary(
        model=name or type(model).__name__,
        input=shape,
        rows=rows,
        params=count_parameters(model),
        trainable=count_parameters(model, trainable_only=True),
        output=out,
    )


def _row(call: Call, seen: set[int]) -> LayerRow:
    """A table row from a traced call; a module's own parameters are counted at its first call only."""
    m = call.module
    functional = call.name.endswith("(functional)")
    params = 0
    if not functional and id(m) not in seen:
        seen.add(id(m))
        params = sum(p.numel() for p in m.parameters(recurse=False))
    out = _first_tensor(call.output)
    f = field_of(out) if out is not None else None
    inplace = bool(getattr(m, "inplace", False))
    return LayerRow(
        name=call.name,
        kind="functional" if functional else type(m).__name__,
        detail="" if functional else describe(m),
        shape=tuple(out.shape[1:]) if out is not None else (),
        params=params,
        macs=call.macs,
        memory=0 if out is None or inplace else out.numel() // out.shape[0] * out.element_size(),
        rf=_axes(f, "r"),
        jump=_axes(f, "j"),
        start=_axes(f, "start"),
        notes=call.notes,
    )


def _first_tensor(obj: Any) -> Tensor | None:
    if isinstance(obj, Tensor):
        return obj if obj.ndim >= 1 else None
    if isinstance(obj, (list, tuple)):
        return next((t for t in map(_first_tensor, obj) if t is not None), None)
    return None


def _axes(f: Field | None, attr: str) -> tuple[float, float] | None:
    return None if f is None else tuple(float(v) for v in getattr(f, attr))


def describe(m: nn.Module) -> str:
    """Short hyper-parameter text: ``96@11×11/4``, ``max 3×3/2``, ``9216→4096``."""
    if isinstance(m, nn.Conv2d):
        k, s, p = m.kernel_size, m.stride, m.padding
        text = f"{m.out_channels}@{_hw(k)}/{_one(s)}" + (f" p{_one(p)}" if p not in ((0, 0), "valid") else "")
        return text + (f" g{m.groups}" if m.groups > 1 else "")
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        kind = "max" if isinstance(m, nn.MaxPool2d) else "avg"
        pad = m.padding if isinstance(m.padding, int) else max(m.padding)
        return f"{kind} {_hw(m.kernel_size)}/{_one(m.stride)}" + (f" p{pad}" if pad else "")
    if isinstance(m, nn.Linear):
        return f"{m.in_features}→{m.out_features}"
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return f"→{_hw(m.output_size)}"
    if isinstance(m, nn.Dropout):
        return f"p={m.p:g}"
    if isinstance(m, nn.LocalResponseNorm):
        return f"n={m.size}"
    return ""


def _hw(v: Any) -> str:
    """A window size: 3 -> ``3×3``, (1, 7) -> ``1×7``."""
    v = (v, v) if isinstance(v, int) else tuple(v)
    return "×".join(map(str, v))


def _one(v: Any) -> str:
    """A stride or padding: 2 or (2, 2) -> ``2``, (1, 2) -> ``1×2``."""
    v = (v, v) if isinstance(v, int) else tuple(v)
    return str(v[0]) if len(set(v)) == 1 else "×".join(map(str, v))


def format_shape(shape: tuple[int, ...]) -> str:
    """Per-image shape as the notes write it: ``(96, 55, 55)`` -> ``55×55×96``; ``(4096,)`` -> ``4096``."""
    if len(shape) == 3:
        c, h, w = shape
        return f"{h}×{w}×{c}"
    return "×".join(map(str, shape))


def human(n: float, unit: str = "") -> str:
    """1234567 -> ``1.23M``."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}{unit}"
    return f"{n:g}{unit}"


def human_bytes(n: int) -> str:
    for div, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= div:
            return f"{n / div:.1f} {suffix}"
    return f"{n} B"


def _axis_text(v: tuple[float, float] | None) -> str:
    if v is None:
        return "-"
    a, b = (f"{x:g}" for x in v)
    return a if a == b else f"{a}×{b}"


def format_table(s: Summary) -> str:
    """The summary as an aligned text table with totals and rounding notes at the bottom."""
    head = ("layer", "type", "output h×w×d", "params", "MACs", "memory", "RF", "jump", "start")
    body = [
        (
            r.name + ("*" if r.notes else ""),
            f"{r.kind} {r.detail}".strip(),
            format_shape(r.shape),
            f"{r.params:,}",
            human(r.macs),
            human_bytes(r.memory),
            _axis_text(r.rf),
            _axis_text(r.jump),
            _axis_text(r.start),
        )
        for r in s.rows
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    right = {3, 4, 5, 6, 7, 8}
    fmt = lambda row: "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))  # noqa: E731
    lines = [f"{s.model}: input {format_shape(s.input)} ({'×'.join(map(str, s.input))})", fmt(head)]
    lines += ["-" * len(lines[-1])] + [fmt(r) for r in body] + ["-" * len(lines[1])]
    lines.append(
        f"total: {s.params:,} parameters ({s.trainable:,} trainable), {human(s.macs)} MACs"
        f" ({s.macs:,}), {human_bytes(s.memory)} of activations per image, output {format_shape(s.output)}"
    )
    lines += [f"* {r.name}: {'; '.join(r.notes)} (PyTorch floors)" for r in s.rows if r.notes]
    return "\n".join(lines)
