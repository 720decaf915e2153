"""The hand-made kernels of the lecture notes, by name.

Each kernel is an integer matrix times a scale (``1/16 × [[1, 2, 1], …]``), so it prints the way the notes
write it and converts to an exact float tensor. The notes' table (identity, the three edge-detection
kernels, sharpen, box blur, Gaussian 3×3 and 5×5, unsharp masking 5×5), the Sobel pair and the three
"X" feature detectors are all here; :func:`get_kernel` also takes a literal matrix (``"1 0 1; 0 1 0; 1 0 1"``).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CnnkitError

if TYPE_CHECKING:
    import torch
    from torch import Tensor

_G5 = ((1, 4, 6, 4, 1), (4, 16, 24, 16, 4), (6, 24, 36, 24, 6), (4, 16, 24, 16, 4), (1, 4, 6, 4, 1))


@dataclass(frozen=True)
class Kernel:
    """A named filter: ``scale × values``.

    Attributes:
        name: lookup name, e.g. ``"gaussian3"``.
        values: the integer matrix as the notes print it, kh rows of kw numbers.
        scale: the factor in front (``Fraction(1, 16)``).
        description: what it does, in one line.
    """

    name: str
    values: tuple[tuple[int, ...], ...]
    scale: Fraction = Fraction(1)
    description: str = ""

    def array(self) -> np.ndarray:
        """The kernel as a float64 array [kh, kw] (scale applied)."""
        return np.array(self.values, dtype=np.float64) * float(self.scale)

    def tensor(self, dtype: torch.dtype | None = None) -> Tensor:
        """The kernel as ``Tensor[kh, kw]`` (scale applied; float64 unless ``dtype``)."""
        import torch

        return torch.from_numpy(self.array()).to(dtype or torch.float64)

    @property
    def size(self) -> tuple[int, int]:
        return len(self.values), len(self.values[0])

    def pretty(self) -> str:
        """Multi-line text: the scale (when not 1) followed by the aligned matrix."""
        width = max(len(str(v)) for row in self.values for v in row)
        rows = ["  " + " ".join(f"{v:>{width}}" for v in row) for row in self.values]
        head = f"{self.scale} ×" if self.scale != 1 else ""
        return "\n".join(([f"  {head}"] if head else []) + rows)


def _k(name: str, values, scale: Fraction = Fraction(1), description: str = "") -> Kernel:
    return Kernel(name, tuple(tuple(r) for r in values), scale, description)


KERNELS: dict[str, Kernel] = {
    k.name: k
    for k in (
        _k("identity", [[0, 0, 0], [0, 1, 0], [0, 0, 0]], description="returns the image unchanged"),
        _k("edge1", [[1, 0, -1], [0, 0, 0], [-1, 0, 1]], description="edge detection: diagonal differences"),
        _k("edge2", [[0, 1, 0], [1, -4, 1], [0, 1, 0]], description="edge detection: 4-neighbour Laplacian"),
        _k("edge3", [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], description='"strong" edge detection: 8-neighbour'),
        _k("sharpen", [[0, -1, 0], [-1, 5, -1], [0, -1, 0]], description="sharpen: identity minus Laplacian"),
        _k("box_blur", [[1] * 3] * 3, Fraction(1, 9), "box blur (normalized): mean of the 3×3 neighbourhood"),
        _k("gaussian3", [[1, 2, 1], [2, 4, 2], [1, 2, 1]], Fraction(1, 16), "Gaussian blur 3×3 (approximation)"),
        _k("gaussian5", _G5, Fraction(1, 256), "Gaussian blur 5×5 (approximation)"),
        _k(
            "unsharp5",
            [[-476 if (i, j) == (2, 2) else v for j, v in enumerate(r)] for i, r in enumerate(_G5)],
            Fraction(-1, 256),
            "unsharp masking 5×5: 2·image − Gaussian blur (amount 1, threshold 0)",
        ),
        _k("sobel_x", [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], description="Sobel: horizontal gradient (vertical edges)"),
        _k("sobel_y", [[-1, -2, -1], [0, 0, 0], [1, 2, 1]], description="Sobel: vertical gradient (horizontal edges)"),
        _k("x_diag", [[1, -1, -1], [-1, 1, -1], [-1, -1, 1]], description='"X" detector: the \\ stroke'),
        _k("x_center", [[1, -1, 1], [-1, 1, -1], [1, -1, 1]], description='"X" detector: the crossing'),
        _k("x_antidiag", [[-1, -1, 1], [-1, 1, -1], [1, -1, -1]], description='"X" detector: the / stroke'),
    )
}


def parse_matrix(text: str) -> Tensor:
    """``"1 1 0; 0 1 1"`` -> float64 ``Tensor[rows, cols]`` (see :func:`parse_values`)."""
    import torch

    return torch.from_numpy(parse_values(text))


def parse_values(text: str) -> np.ndarray:
    """``"1 1 0; 0 1 1"`` (rows split by ``;`` or newlines, numbers by spaces or commas) -> float64 [rows, cols].

    Raises:
        CnnkitError: for an empty matrix, a non-number or ragged rows.
    """
    rows = [r.replace(",", " ").split() for r in text.replace("\n", ";").split(";") if r.strip()]
    try:
        values = [[float(Fraction(v)) for v in r] for r in rows]
    except (ValueError, ZeroDivisionError):
        raise CnnkitError(
            f"expected a matrix of numbers such as '1 0 1; 0 1 0; 1 0 1', found {text!r}; separate rows with ';'"
        ) from None
    if not values or len({len(r) for r in values}) != 1:
        lengths = [len(r) for r in values]
        raise CnnkitError(
            f"expected a rectangular matrix (every row the same length), found row lengths {lengths} in {text!r};"
            " separate rows with ';' and numbers with spaces"
        )
    return np.array(values, dtype=np.float64)


def get_kernel(spec: str) -> Tensor:
    """A kernel by name or a literal matrix -> float64 ``Tensor[kh, kw]`` (see :func:`kernel_values`)."""
    import torch

    return torch.from_numpy(kernel_values(spec))


def kernel_values(spec: str) -> np.ndarray:
    """A kernel by name (``"sharpen"``) or a literal matrix (``"1 0 1; 0 1 0; 1 0 1"``) -> float64 [kh, kw].

    Raises:
        CnnkitError: for an unknown name (with a did-you-mean) or a malformed matrix.
    """
    if spec in KERNELS:
        return KERNELS[spec].array()
    if any(ch.isdigit() for ch in spec):
        return parse_values(spec)
    close = difflib.get_close_matches(spec, KERNELS, n=3)
    hint = f"did you mean {', '.join(close)}?" if close else "run `cnnkit kernels` to list them."
    raise CnnkitError(f"expected a kernel name or a matrix like '1 0; 0 1', found {spec!r}; {hint}")
