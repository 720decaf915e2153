"""``cnnkit convolve`` and ``cnnkit kernels``: the convolution lab on the command line.

``cnnkit convolve --matrix "1 1 1 0 0; 0 1 1 1 0; …" --kernel "1 0 1; 0 1 0; 1 0 1"`` prints the feature map
with the output-size arithmetic; ``cnnkit convolve IMAGE --kernel sharpen --out OUT.png`` writes the image and
its filtered version side by side; ``cnnkit kernels`` lists the named kernels with their matrices.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from ..errors import CnnkitError

if TYPE_CHECKING:  # numpy loads inside the commands: `cnnkit --help` stays instant
    import numpy as np


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convolve", help="slide a kernel over a matrix or an image (stride, padding, flip)")
    p.add_argument("image", nargs="?", help="image file to filter (grayscale); or use --matrix")
    p.add_argument("--matrix", help="input matrix, rows split by ';', e.g. '1 1 0; 0 1 1; 1 0 1'")
    p.add_argument("--kernel", required=True, help="kernel name (see `cnnkit kernels`) or matrix '1 0 1; 0 1 0; 1 0 1'")
    p.add_argument("--stride", type=int, default=1, help="step of the sliding window (default 1)")
    p.add_argument("--padding", type=int, help="zeros added on each side (default 0 for --matrix, (F−1)/2 for images)")
    p.add_argument("--mode", choices=("correlate", "convolve"), default="correlate", help="default correlate")
    p.add_argument("--out", help="PNG to write for an IMAGE: input and output side by side")
    p.set_defaults(func=run_convolve)
    k = sub.add_parser("kernels", help="list the named kernels of the convolution lab")
    k.add_argument("--json", action="store_true", help="machine-readable output")
    k.set_defaults(func=run_kernels)


def format_matrix(m: np.ndarray, indent: str = "  ") -> str:
    """[H, W] as aligned rows; whole numbers without decimals, others with 3."""
    import numpy as np

    whole = bool(np.all(m == np.round(m)))
    cells = [[f"{v:.0f}" if whole else f"{v:.3f}" for v in row] for row in np.asarray(m).tolist()]
    width = max(len(c) for row in cells for c in row)
    return "\n".join(indent + " ".join(c.rjust(width) for c in row) for row in cells)


def mode_lines(kernel: np.ndarray, mode: str) -> list[str]:
    """Which product was computed and how it relates to the other one, for this kernel."""
    import numpy as np

    from ..conv.ops import MODE_NOTE

    flipped = np.asarray(kernel)[::-1, ::-1]
    symmetric = bool(np.array_equal(kernel, flipped))
    lines = [f"mode: {MODE_NOTE[mode]}"]
    if mode == "convolve":
        lines += ["kernel flipped 180°:", format_matrix(flipped)]
    if symmetric:
        lines.append("this kernel is unchanged by a 180° flip, so correlation and true convolution agree here")
    else:
        other = "convolve" if mode == "correlate" else "correlate"
        lines.append(f"this kernel is not symmetric: --mode {other} gives a different map (learned CNN filters")
        lines.append("simply learn the flipped weights, which is why layers skip the flip)")
    return lines


def size_line(shape: tuple[int, int], kernel: np.ndarray, stride: int, padding: int) -> str:
    from ..conv.ops import formula, output_size

    (h, w), (kh, kw) = shape, kernel.shape
    oh, ow = output_size(h, kh, stride, padding), output_size(w, kw, stride, padding)
    rows = formula(h, kh, stride, padding)
    cols = "" if (w, kw) == (h, kh) else f", columns {formula(w, kw, stride, padding)}"
    return f"output size (N + 2P − F)/S + 1: rows {rows}{cols} -> {oh}×{ow}"


def run_convolve(args: argparse.Namespace) -> int:
    from ..conv.kernels import kernel_values, parse_values

    if (args.matrix is None) == (args.image is None):
        raise CnnkitError("expected either an IMAGE file or --matrix, found both or neither; pass exactly one")
    kernel = kernel_values(args.kernel)
    if args.matrix is not None:
        return convolve_matrix(parse_values(args.matrix), kernel, args)
    return convolve_image(args.image, kernel, args)


def convolve_matrix(x: np.ndarray, kernel: np.ndarray, args: argparse.Namespace) -> int:
    """Print input, kernel, the size arithmetic, the mode note and the feature map."""
    from ..conv.ops import filter2d

    padding = args.padding or 0
    out = filter2d(x, kernel, args.stride, padding, args.mode)
    print(f"input {x.shape[0]}×{x.shape[1]}, kernel {kernel.shape[0]}×{kernel.shape[1]}, stride {args.stride},"
          f" padding {padding}")  # fmt: skip
    print(format_matrix(x))
    print("kernel:")
    print(format_matrix(kernel))
    print(size_line(tuple(x.shape), kernel, args.stride, padding))
    print("\n".join(mode_lines(kernel, args.mode)))
    print("feature map:")
    print(format_matrix(out))
    return 0


def convolve_image(path: str, kernel: np.ndarray, args: argparse.Namespace) -> int:
    """Filter a grayscale image and write input | output as a PNG."""
    from ..conv.figure import side_by_side
    from ..conv.kernels import KERNELS
    from ..conv.ops import filter2d, same_padding
    from ..data.images import ONE_IMAGE, load_image
    from ..io import check_output

    if not args.out:
        raise CnnkitError("expected --out OUT.png for an IMAGE (the result is a picture), found none; add --out")
    check_output(args.out, "--out", (path,))
    x = load_image(path, 1, None, ONE_IMAGE)[0].double() / 255  # [H, W] in 0–1
    padding = args.padding if args.padding is not None else same_padding(kernel.shape[0])
    out = filter2d(x, kernel, args.stride, padding, args.mode)
    name = args.kernel if args.kernel in KERNELS else "kernel"
    title = f"{name} ({args.mode}), S={args.stride}, P={padding}\n{out.shape[0]}×{out.shape[1]}, "
    title += f"values {out.min():.2f}…{out.max():.2f}"
    side_by_side([x, out], [f"input {x.shape[0]}×{x.shape[1]}", title], args.out)
    print(size_line(tuple(x.shape), kernel, args.stride, padding))
    print(f"wrote {args.out}")
    return 0


def run_kernels(args: argparse.Namespace) -> int:
    from ..conv.kernels import KERNELS

    if args.json:
        rows = [
            {"name": k.name, "scale": str(k.scale), "values": [list(r) for r in k.values], "description": k.description}
            for k in KERNELS.values()
        ]
        print(json.dumps(rows, indent=2))
        return 0
    for k in KERNELS.values():
        print(f"{k.name} ({k.size[0]}×{k.size[1]}): {k.description}")
        print(k.pretty())
    print(f"{len(KERNELS)} kernels; use one with `cnnkit convolve IMAGE --kernel NAME --out OUT.png`")
    return 0
