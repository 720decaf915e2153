"""One traced forward pass: per-call shapes, multiply-accumulates and receptive fields, on the meta device.

A :class:`Tracer` is a ``TorchFunctionMode`` (it sees every functional call, including residual adds,
concatenations and ``torch.flatten`` that live outside modules) plus forward hooks on every module (to know
which layer is running). Each activation tensor carries a :class:`Field`: the receptive field of its
values in input pixels. The rules, per spatial axis, for a window of size ``k``, stride ``s``, padding ``p``
and dilation ``d`` (``k' = d(k − 1) + 1``), starting from ``r = 1, j = 1, start = 0`` at the input::

    r_out = r_in + (k' − 1)·j_in           receptive-field size
    j_out = j_in·s                         jump: input pixels between neighbouring outputs (effective stride)
    start_out = start_in + ((k' − 1)/2 − p)·j_in   centre of the first output's field (pixel i has centre i)

Global pooling and a linear layer on a flattened map are windows as large as the map. Element-wise ops
(ReLU, BatchNorm, add, concat, LRN) keep the field of their widest input and the jump of their densest one.

Multiply-accumulates (MACs) count conv (``k_h·k_w·C_in/groups·C_out·H_out·W_out``) and linear
(``in·out`` per row) only, bias excluded; norms, pools and activations count 0. That is half the FLOPs
``torch.utils.flop_counter.FlopCounterMode`` reports for the same convs and matmuls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ..conv.ops import exact_size, formula
from ..errors import CnnkitError

CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
LINEAR_ARGS = ("input", "weight", "bias")
MAXPOOL_ARGS = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
AVGPOOL_ARGS = ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
MAXPOOL_NAMES = {"max_pool2d", "_max_pool2d", "max_pool2d_with_indices"}
ADAPTIVE_NAMES = {
    "adaptive_avg_pool2d",
    "adaptive_max_pool2d",
    "_adaptive_max_pool2d",
    "adaptive_max_pool2d_with_indices",
}


class ShapeError(CnnkitError):
    """A layer that does not fit its input. ``spatial`` is true when another input size could fix it."""

    def __init__(self, message: str, spatial: bool = True) -> None:
        super().__init__(message)
        self.spatial = spatial


@dataclass(frozen=True)
class Field:
    """Receptive field of an activation's values, per axis (rows, columns), in input pixels.

    Attributes:
        r: receptive-field size.
        j: jump (input pixels between neighbouring values; the effective stride).
        start: centre of the first value's field (input pixel i has centre i).
        hw: spatial size of the map the values are spread over (kept through flatten).
        src: per-image shape of the map before it was flattened, if it was.
    """

    r: tuple[float, float] = (1, 1)
    j: tuple[float, float] = (1, 1)
    start: tuple[float, float] = (0, 0)
    hw: tuple[int, int] = (1, 1)
    src: tuple[int, ...] | None = None

    def window(self, k, s, p, d, hw: tuple[int, int]) -> Field:
        """The field after a sliding window of per-axis kernel ``k``, stride ``s``, padding ``p``, dilation ``d``."""
        ke = [d[i] * (k[i] - 1) + 1 for i in range(2)]
        return Field(
            r=tuple(self.r[i] + (ke[i] - 1) * self.j[i] for i in range(2)),
            j=tuple(self.j[i] * s[i] for i in range(2)),
            start=tuple(self.start[i] + ((ke[i] - 1) / 2 - p[i]) * self.j[i] for i in range(2)),
            hw=hw,
        )

    def whole(self) -> Field:
        """The field of a value that sees the whole ``hw`` map (global pooling, a linear layer on a flat map)."""
        return self.window(self.hw, self.hw, (0, 0), (1, 1), (1, 1))


@dataclass
class Call:
    """One call of a leaf module (or functional work done directly inside a non-leaf module)."""

    name: str
    module: nn.Module
    macs: int = 0
    notes: list[str] = field(default_factory=list)
    output: Any = None


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (list, tuple)):
        return (int(v[0]), int(v[-1])) if v else (0, 0)
    return (int(v), int(v))


def _bind(names: tuple[str, ...], args: tuple, kwargs: dict) -> dict[str, Any]:
    bound = dict(zip(names, args))
    bound.update(kwargs)
    return bound


def _tensors(obj: Any) -> list[Tensor]:
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    return []


def field_of(t: Tensor) -> Field | None:
    return getattr(t, "_cnnkit_field", None)


def _merge(inputs: list[Tensor]) -> Field | None:
    """Element-wise ops: the widest receptive field, the densest jump."""
    fields = [f for f in map(field_of, inputs) if f is not None]
    if not fields:
        return None
    widest = max(fields, key=lambda f: sum(f.r))
    densest = min(fields, key=lambda f: sum(f.j))
    return replace(densest, r=widest.r)


class Tracer(TorchFunctionMode):
    """Trace a forward pass: records :class:`Call` s, counts MACs, propagates fields and checks shapes.

    Args:
        model: the model being run (hooks are added by :meth:`attach`).
        strict: also refuse conv/pool outputs whose size ``(N + 2P − F)/S + 1`` is not whole.
        record: keep the per-call records (off for quick fit checks).
    """

    def __init__(self, model: nn.Module, strict: bool = False, record: bool = True) -> None:
        super().__init__()
        self.model, self.strict, self.record = model, strict, record
        self.stack: list[tuple[str, nn.Module]] = []
        self.calls: list[Call] = []
        self.open: list[Call] = []
        self.pending: Call | None = None  # functional pseudo-call of the op being run
        self.handles: list[Any] = []
        self.names = {m: n for n, m in model.named_modules()}

    # ---- hooks: which module is running ----------------------------------------------------------------------
    def attach(self) -> Tracer:
        for m in self.model.modules():
            self.handles.append(m.register_forward_pre_hook(self._enter))
            self.handles.append(m.register_forward_hook(self._leave))
        return self

    def detach(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def _enter(self, module: nn.Module, args: tuple) -> None:
        name = self.names.get(module, "") or type(module).__name__
        self.stack.append((name, module))
        if self.record and not any(True for _ in module.children()):
            self.open.append(Call(name, module))

    def _leave(self, module: nn.Module, args: tuple, output: Any) -> None:
        self.stack.pop()
        if self.open and self.open[-1].module is module:
            call = self.open.pop()
            call.output = output
            self.calls.append(call)

    @property
    def layer(self) -> str:
        """Name and type of the innermost running module, for messages."""
        if not self.stack:
            return type(self.model).__name__
        name, m = self.stack[-1]
        return f"{name} ({type(m).__name__})"

    def _current(self) -> Call | None:
        """The open leaf call, or a functional pseudo-call for work done directly in a non-leaf module."""
        if not self.record:
            return None
        if self.open and self.stack and self.open[-1].module is self.stack[-1][1]:
            return self.open[-1]
        if self.pending is None:
            name, module = self.stack[-1] if self.stack else (type(self.model).__name__, self.model)
            self.pending = Call(f"{name} (functional)", module)
            self.calls.append(self.pending)
        return self.pending

    # ---- the mode: every functional call -----------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        win = window_params(name, args, kwargs)
        if win is not None:
            if name == "conv2d":
                self._check_channels(args, kwargs)
            self._note(window_check(self, *win))
        elif name == "linear":
            self._check_linear(_bind(LINEAR_ARGS, args, kwargs))
        out = func(*args, **kwargs)
        new = self._field_after(name, win, args, kwargs, out)
        if self.pending is not None:  # a conv/pool/linear called outside any leaf module: its own row
            self.pending.output, self.pending = out, None
        if new is not None:
            for t in _tensors(out):
                t._cnnkit_field = new
        return out

    def _note(self, notes: list[str]) -> None:
        call = self._current() if notes else None
        if call is not None:
            call.notes += notes

    def _field_after(self, name: str, win: tuple | None, args: tuple, kwargs: dict, out: Any) -> Field | None:
        """Count MACs and compute the output's field."""
        res = _tensors(out)[0] if _tensors(out) else None
        if win is not None:
            if name == "conv2d":  # C_out·H'·W' outputs, each k_h·k_w·C_in/groups multiply-adds
                self._add_macs(res.numel() // res.shape[0] * _bind(CONV_ARGS, args, kwargs)["weight"][0].numel())
            f = field_of(win[0])
            return None if f is None else f.window(*win[1:5], hw=tuple(res.shape[-2:]))
        if name in ADAPTIVE_NAMES:
            return _adaptive_field(args[0], res)
        if name == "linear":
            a = _bind(LINEAR_ARGS, args, kwargs)
            x, w = a["input"], a["weight"]
            self._add_macs(x.numel() // max(1, x.shape[0]) * w.shape[0] if x.ndim > 1 else w.numel())
            f = field_of(x)
            return None if f is None else f.whole() if x.ndim == 2 else f
        return self._passthrough(name, args, kwargs, out)

    def _add_macs(self, macs: int) -> None:
        call = self._current()
        if call is not None:
            call.macs += int(macs)

    def _passthrough(self, name: str, args: tuple, kwargs: dict, out: Any) -> Field | None:
        """Non-spatial ops keep the field; reshaping a map to Tensor[N, D] remembers the map's shape."""
        inputs = _tensors(args) + _tensors(kwargs)
        f = _merge(inputs)
        outs = _tensors(out)
        if f is None or not outs:
            return None
        if inputs[0].ndim == 4 and outs[0].ndim == 2 and name in ("flatten", "view", "reshape"):
            return replace(f, src=tuple(inputs[0].shape[1:]))
        if name == "mean" and inputs[0].ndim == 4 and _is_spatial_reduce(args, kwargs):
            return f.whole()
        return f

    def _check_channels(self, args: tuple, kwargs: dict) -> None:
        """Before a conv: the input must have ``in_channels`` channels (no input size can fix that)."""
        a = _bind(CONV_ARGS, args, kwargs)
        x, w = a["input"], a["weight"]
        want = w.shape[1] * int(a.get("groups", 1) or 1)
        if x.ndim == 4 and x.shape[1] != want:
            found = "×".join(map(str, x.shape[1:]))
            raise ShapeError(f"layer {self.layer} expects {want} input channels, found {found}", spatial=False)

    def _check_linear(self, a: dict[str, Any]) -> None:
        """Before ``F.linear(x, weight)``: refuse an input width the weight does not take."""
        x, w = a["input"], a["weight"]
        if x.shape[-1] != w.shape[1]:
            raise ShapeError(linear_message(self.layer, x, int(w.shape[1])))


def window_params(name: str, args: tuple, kwargs: dict) -> tuple | None:
    """``(input, kernel, stride, padding, dilation, ceil_mode)`` of a conv2d/max_pool2d/avg_pool2d call, else None."""
    if name == "conv2d":
        a = _bind(CONV_ARGS, args, kwargs)
        k, d = tuple(a["weight"].shape[-2:]), _pair(a.get("dilation", 1))
        s, p = _pair(a.get("stride", 1)), a.get("padding", 0)
        if isinstance(p, str):
            p = (0, 0) if p == "valid" else tuple(d[i] * (k[i] - 1) // 2 for i in range(2))
        return a["input"], k, s, _pair(p), d, False
    if name in MAXPOOL_NAMES or name == "avg_pool2d":
        a = _bind(MAXPOOL_ARGS if name in MAXPOOL_NAMES else AVGPOOL_ARGS, args, kwargs)
        k = _pair(a["kernel_size"])
        s, p, d = _pair(a.get("stride") or k), _pair(a.get("padding", 0)), _pair(a.get("dilation", 1))
        return a["input"], k, s, p, d, bool(a.get("ceil_mode", False))
    return None


def _adaptive_field(x: Tensor, res: Tensor) -> Field | None:
    f = field_of(x)
    if f is None:
        return None
    (h, w), (oh, ow) = x.shape[-2:], res.shape[-2:]
    if (oh, ow) == (1, 1):
        return f.whole()
    s = (h // oh, w // ow)
    return f.window((h - (oh - 1) * s[0], w - (ow - 1) * s[1]), s, (0, 0), (1, 1), (oh, ow))


def _is_spatial_reduce(args: tuple, kwargs: dict) -> bool:
    dims = kwargs.get("dim", args[1] if len(args) > 1 else None)
    dims = {dims} if isinstance(dims, int) else set(dims or ())
    return dims in ({2, 3}, {-1, -2})


def linear_message(layer: str, x: Tensor, want: int) -> str:
    """Why a linear layer cannot read ``x``: its width, the map it came from, the map it would need."""
    found = int(x.shape[-1])
    f = field_of(x)
    src = f.src if f is not None else None
    if src and len(src) == 3:
        c, h, w = src
        found_text = f"{c}×{h}×{w} = {found} values (the {h}×{w}×{c} map before it, flattened)"
        side = math.isqrt(want // c) if want % c == 0 else 0
        need = f"; it needs a {side}×{side}×{c} map ({c}×{side}×{side} = {want})" if side * side * c == want else ""
    else:
        found_text, need = f"{found} values", ""
    return f"layer {layer} expects {want} input features, found {found_text}{need}"


def window_check(tracer: Tracer, x: Tensor, k, s, p, d, ceil: bool) -> list[str]:
    """Refuse a window that no longer fits; return the rounding notes for a non-whole output size."""
    notes = []
    for axis, n in zip(("rows", "columns"), x.shape[-2:]):
        i = 0 if axis == "rows" else 1
        ke = d[i] * (k[i] - 1) + 1
        exact = exact_size(int(n), k[i], s[i], p[i], d[i])
        text = formula(int(n), ke, s[i], p[i])
        if exact < 1:
            raise ShapeError(
                f"layer {tracer.layer} gets a {int(n)}-long input on {axis}, found {text}: the map shrinks to nothing"
            )
        if exact.denominator != 1 and not ceil:
            if tracer.strict:
                raise ShapeError(
                    f"layer {tracer.layer} expects (N + 2P − F)/S + 1 to be whole on {axis}, found {text}"
                    " (PyTorch would silently drop the last rows/columns)"
                )
            notes.append(f"{axis} {text} -> {math.floor(exact)}")
    return notes


def run_traced(model: nn.Module, shape: tuple[int, ...], strict: bool = False, record: bool = True) -> Tracer:
    """Run ``model`` once on a meta-device ``Tensor[1, *shape]`` under a :class:`Tracer`.

    The model is not changed: a model with real weights is called with meta stand-ins (``functional_call``),
    in eval mode. A model whose code needs real tensors falls back to a zero image on its own device.

    Raises:
        ShapeError: when a layer does not fit, naming it.
        CnnkitError: the model's own input check.
    """
    tracer = Tracer(model, strict=strict, record=record).attach()
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            _forward(model, shape, tracer)
    finally:
        tracer.detach()
        model.train(was)
    return tracer


def _forward(model: nn.Module, shape: tuple[int, ...], tracer: Tracer) -> None:
    from torch.func import functional_call

    on_meta = all(t.is_meta for t in [*model.parameters(), *model.buffers()])
    x = torch.zeros(1, *shape, device="meta")
    x._cnnkit_field = Field(hw=tuple(shape[-2:]))
    stand_ins = {n: torch.empty_like(t, device="meta") for n, t in [*model.named_parameters(), *model.named_buffers()]}
    try:
        with tracer:
            if on_meta:
                model(x)
            else:
                functional_call(model, stand_ins, (x,))
    except (CnnkitError, KeyboardInterrupt):
        raise
    except (RuntimeError, NotImplementedError, TypeError, ValueError, IndexError) as e:
        if on_meta:
            raise ShapeError(f"layer {tracer.layer} fails on a {'×'.join(map(str, shape))} input: {_first(e)}") from e
        _forward_real(model, shape, tracer)


def _forward_real(model: nn.Module, shape: tuple[int, ...], tracer: Tracer) -> None:
    device = next(iter(model.parameters()), torch.zeros(())).device
    x = torch.zeros(1, *shape, device=device)
    x._cnnkit_field = Field(hw=tuple(shape[-2:]))
    tracer.stack.clear()
    tracer.open.clear()
    tracer.calls.clear()
    tracer.pending = None
    try:
        with tracer:
            model(x)
    except (RuntimeError, NotImplementedError, TypeError, ValueError, IndexError) as e:
        raise ShapeError(f"layer {tracer.layer} fails on a {'×'.join(map(str, shape))} input: {_first(e)}") from e


def _first(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
