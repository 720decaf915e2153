"""Convolution arithmetic and the two sliding-window products, on top of ``torch.nn.functional.conv2d``.

Cross-correlation slides the kernel over the image as it is: ``out[i, j] = Σ x[i·S + u, j·S + v] · w[u, v]``.
That is what every CNN layer (``nn.Conv2d``) computes. True convolution flips the kernel by 180° first
(``w[F−1−u, F−1−v]``), as in the mathematical definition ``(f ∗ g)(t) = ∫ f(τ) g(t − τ) dτ``. The two agree
for symmetric kernels; a learned filter just learns the flipped weights, so nothing is lost by not flipping.

The output size of either is ``(N + 2P − F)/S + 1`` per spatial axis; :func:`output_size` insists it is
a whole number and says which paddings, strides and input sizes would make it one.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import TYPE_CHECKING, Literal, TypeVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import CnnkitError

if TYPE_CHECKING:
    from torch import Tensor

Array = TypeVar("Array", np.ndarray, "Tensor")

Mode = Literal["correlate", "convolve"]
MAX_MAP = 64_000_000  # values of a padded float64 map (512 MB): beyond this the lab refuses instead of allocating

MODE_NOTE = {
    "correlate": "cross-correlation: the kernel slides as written (what nn.Conv2d computes)",
    "convolve": "true convolution: the kernel is flipped 180° first, then slid (the textbook definition)",
}


def exact_size(n: int, f: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> Fraction:
    """``(N + 2P − F')/S + 1`` as an exact fraction, with the dilated filter length ``F' = D(F − 1) + 1``.

    The one place cnnkit computes a sliding window's output size: the convolution lab, the model preflight, the
    layer-list specs, the fixed-size models' messages and the tracer all call it.
    """
    return Fraction(n + 2 * padding - (dilation * (f - 1) + 1), stride) + 1


def rounded_size(n: int, f: int, stride: int = 1, padding: int = 0, dilation: int = 1, ceil: bool = False) -> int:
    """The size PyTorch gives: :func:`exact_size` rounded down (or up with ``ceil_mode``)."""
    exact = exact_size(n, f, stride, padding, dilation)
    return math.ceil(exact) if ceil else math.floor(exact)


def formula(n: int, f: int, stride: int = 1, padding: int = 0) -> str:
    """The output-size arithmetic with numbers filled in: ``"(6 + 2·0 − 3)/2 + 1 = 2.5"``."""
    exact = exact_size(n, f, stride, padding)
    value = str(exact.numerator) if exact.denominator == 1 else f"{float(exact):g}"
    return f"({n} + 2·{padding} − {f})/{stride} + 1 = {value}"


def fits(n: int, f: int, stride: int, padding: int) -> bool:
    """True when ``(n + 2·padding − f)/stride + 1`` is a whole number ≥ 1."""
    exact = exact_size(n, f, stride, padding)
    return exact >= 1 and exact.denominator == 1


def nearest_sizes(n: int, ok, reach: int = 64) -> list[int]:
    """The nearest input size below ``n`` and the nearest above for which ``ok(size)`` holds (within ``reach``)."""
    below = next((m for m in range(n - 1, max(0, n - reach), -1) if ok(m)), None)
    above = next((m for m in range(n + 1, n + reach + 1) if ok(m)), None)
    return [m for m in (below, above) if m is not None]


def fitting_choices(n: int, f: int, stride: int = 1, padding: int = 0) -> str:
    """Text naming the nearest paddings, strides and input sizes that make the output size whole."""
    pads = [p for p in range(0, f + stride) if fits(n, f, stride, p)][:2]
    strides = [s for s in range(1, max(f, stride) + 2) if s != stride and fits(n, f, s, padding)][:3]
    sizes = nearest_sizes(n, lambda m: fits(m, f, stride, padding))
    parts = [f"padding {p} ({formula(n, f, stride, p)})" for p in pads]
    parts += [f"stride {s} ({formula(n, f, s, padding)})" for s in strides]
    parts += [f"input size {' or '.join(map(str, sizes))} at stride {stride}, padding {padding}"] if sizes else []
    note = "" if pads else f"no zero padding fits at stride {stride} ({n} + 2P − {f} is never a multiple of {stride}); "
    return note + "what fits: " + ", ".join(parts)


def output_size(n: int, f: int, stride: int = 1, padding: int = 0) -> int:
    """Output length ``(N + 2P − F)/S + 1`` of a convolution along one axis.

    Args:
        n: input length N.
        f: filter length F.
        stride: S ≥ 1.
        padding: zeros added on each side, P ≥ 0.

    Raises:
        CnnkitError: when the result is not a whole number ≥ 1, showing the arithmetic and what would fit.
    """
    if stride < 1 or padding < 0 or f < 1 or n < 1:
        raise CnnkitError(
            f"expected N ≥ 1, F ≥ 1, stride ≥ 1 and padding ≥ 0, found N={n}, F={f}, S={stride}, P={padding}"
        )
    if n + 2 * padding < f:
        raise CnnkitError(
            f"expected the {f}-wide filter to fit in the padded input, found {formula(n, f, stride, padding)}"
            f" (the map shrinks to nothing); {fitting_choices(n, f, stride, padding)}"
        )
    if not fits(n, f, stride, padding):
        raise CnnkitError(
            f"expected (N + 2P − F)/S + 1 to be a whole number, found {formula(n, f, stride, padding)}"
            f" (the filter would hang off the edge); {fitting_choices(n, f, stride, padding)}"
        )
    return int(exact_size(n, f, stride, padding))


def filter2d(
    x: Array, kernel: Array | np.ndarray, stride: int = 1, padding: int = 0, mode: Mode = "correlate"
) -> Array:
    """Slide one 2-D kernel over each channel of an image, in float64 (exact for integers).

    The lab's own arithmetic, in NumPy so that ``cnnkit convolve --matrix`` needs no torch; a tensor given is
    returned as a tensor (a test checks it equals ``nn.Conv2d``).

    Args:
        x: [H, W] or [C, H, W] (each channel filtered on its own), a NumPy array or a torch tensor.
        kernel: [kh, kw].
        stride: step of the window.
        padding: rows/columns of zeros added on every side.
        mode: ``"correlate"`` (what CNN layers compute) or ``"convolve"`` (kernel flipped 180° first).

    Returns:
        [H', W'] or [C, H', W'] with H' = (H + 2P − kh)/S + 1, likewise W', of the type of ``x``.

    Raises:
        CnnkitError: when the output size is not a whole number ≥ 1 (see :func:`output_size`).
    """
    if mode not in MODE_NOTE:
        raise CnnkitError(f"expected mode correlate or convolve, found {mode!r}")
    a, w = np.asarray(x, dtype=np.float64), np.asarray(kernel, dtype=np.float64)
    if a.ndim not in (2, 3) or w.ndim != 2:
        raise CnnkitError(f"expected an H×W or C×H×W image and a 2-D kernel, found {a.shape}, {w.shape}")
    for n, f in zip(a.shape[-2:], w.shape):
        output_size(int(n), int(f), stride, padding)
    channels = a.size // max(1, a.shape[-2] * a.shape[-1])
    padded = (a.shape[-2] + 2 * padding) * (a.shape[-1] + 2 * padding) * channels
    if padded > MAX_MAP:
        raise CnnkitError(
            f"expected a padded map of at most {MAX_MAP:,} values, found {padded:,} (padding {padding} on"
            f" {a.shape[-2]}×{a.shape[-1]}); use less padding or a smaller image"
        )
    w = w[::-1, ::-1] if mode == "convolve" else w
    img = np.pad(a.reshape(-1, *a.shape[-2:]), ((0, 0), (padding, padding), (padding, padding)))  # [C, H+2P, W+2P]
    windows = sliding_window_view(img, w.shape, axis=(1, 2))[:, ::stride, ::stride]  # [C, H', W', kh, kw]
    out = np.einsum("chwij,ij->chw", windows, w)
    out = out[0] if a.ndim == 2 else out
    return _like(out, x)


def _like(out: np.ndarray, x: Array) -> Array:
    """``out`` as the type of ``x``: a NumPy array, or a float64 torch tensor."""
    if isinstance(x, np.ndarray):
        return out
    import torch

    return torch.from_numpy(np.ascontiguousarray(out))


def same_padding(f: int) -> int:
    """Zero padding ``(F − 1)/2`` that keeps the size at stride 1 (the notes' rule; F must be odd)."""
    if f % 2 == 0:
        raise CnnkitError(f"expected an odd filter size for 'same' padding (F − 1)/2, found F={f}; pass --padding")
    return (f - 1) // 2


def conv_weights(filters: int, kernel: int, in_chans: int, bias: bool = False) -> int:
    """Weights of a conv layer: ``filters × kernel × kernel × in_chans`` (+ one bias per filter).

    The notes' example: 5 filters of 7×7×3 -> ``conv_weights(5, 7, 3) == 735``.
    """
    return filters * kernel * kernel * in_chans + (filters if bias else 0)


def receptive_field(kernels: list[int], strides: list[int] | None = None) -> int:
    """Receptive field of stacked convs/pools: ``r = 1 + Σ (F_l − 1) · Π_{m<l} S_m``.

    Three stacked 3×3 stride-1 convs: ``receptive_field([3, 3, 3]) == 7``, the same as one 7×7 conv, with
    ``3·3·3 = 27`` weights per input/output channel pair instead of ``7·7 = 49``.
    """
    strides = strides or [1] * len(kernels)
    r, jump = 1, 1
    for f, s in zip(kernels, strides):
        r, jump = r + (f - 1) * jump, jump * s
    return r
