"""Explicit vs convolutional sliding windows: the same classifier scoring every window of one image, crop by crop
(a batch of crops through the classifier) and in one forward pass of its fully convolutional form (its ``Linear``
layers as convolutions, :func:`cnnkit.detection.windows.fully_convolutional`). The explicit windows are ``stride``
pixels apart, the stride of the convolutional form, so both score the same windows.

Only the forward passes are timed: the crops are cut, the network converted and the outputs compared before the
clock starts; one warm-up pass each, then the median of ``--repeats``. Prints, per classifier and image size, the
windows, both times, the ratio, how far the two score maps differ, and the CPU. Time it alone: other processes on
the same cores distort both figures.

The ratio is bounded by the work a window does not share with its neighbours: in the convolutional form the
layers after the last shared map (LeNet-5's C5 and F6, AlexNet's FC6-FC8) still run once per window. For LeNet-5,
whose convolutions are small, that is about a seventh of a window's multiply-adds; for AlexNet about a twentieth.
LeNet-5 gains more than that in time because a batch of tiny crops runs slower per multiply-add than one large
image. Zero padding (cnnkit's LeNet-5 conv1, AlexNet conv2-5) makes a window's border see its neighbours in the
whole image and zeros in a crop: the ``max |diff|`` column shows it; the unpadded LeNet-5 agrees to rounding.

    python benchmarks/sliding_windows.py [--repeats 5] [--sizes 128 256 512] [--alexnet-sizes 355 483 739]
                                         [--skip-alexnet]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from cnnkit.detection.windows import fully_convolutional, window_crops
from cnnkit.machine import cpu_name
from cnnkit.models import create_model


def median_time(fn: Callable[[], Tensor], repeats: int) -> tuple[float, Tensor]:
    """One warm-up call, then the median wall time of ``repeats`` calls (seconds) and the last output."""
    out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


@torch.inference_mode()
def compare(model: nn.Module, size: int, repeats: int, batch_size: int = 256) -> dict[str, float]:
    """Score every window of one random ``size``×``size`` image both ways.

    Returns:
        windows, explicit and convolutional seconds (median), their ratio, and the largest difference between the
        two score maps (logits).
    """
    fcn = fully_convolutional(model)
    c, side, _ = model.default_input
    image = torch.randn(c, size, size, generator=torch.Generator().manual_seed(size))
    crops, _ = window_crops(image, side, fcn.stride)  # [M, C, side, side], rows first
    crops = crops.contiguous()
    slow_s, slow = median_time(lambda: torch.cat([model(b) for b in crops.split(batch_size)]), repeats)
    fast_s, fast = median_time(lambda: fcn(image[None]), repeats)  # one forward over the whole image: [1, K, h, w]
    fast = fast[0].flatten(1).T  # [h·w, K], rows first, as the crops
    if fast.shape != slow.shape:
        raise SystemExit(f"expected {tuple(slow.shape)} window scores from the convolutional pass, found {fast.shape}")
    return {"windows": len(crops), "explicit_s": slow_s, "conv_s": fast_s, "ratio": slow_s / fast_s,
            "max_diff": float((fast - slow).abs().max())}  # fmt: skip


UNPADDED_LENET5 = """name: lenet5-unpadded
input: [1, 32, 32]
num_classes: 10
layers:
  - {type: conv, out: 6, kernel: 5}
  - {type: tanh}
  - {type: pool, mode: avg, kernel: 2}
  - {type: conv, out: 16, kernel: 5}
  - {type: tanh}
  - {type: pool, mode: avg, kernel: 2}
  - {type: conv, out: 120, kernel: 5}
  - {type: tanh}
  - {type: flatten}
  - {type: fc, out: 84}
  - {type: tanh}
  - {type: fc}
"""


def unpadded_lenet5() -> nn.Module:
    """LeNet-5 on 32×32 inputs without zero padding: a window sees the same pixels in a crop as in the whole image,
    so the two score maps agree to rounding."""
    from cnnkit.models.spec import build_spec_model

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lenet5.yaml"
        path.write_text(UNPADDED_LENET5)
        return build_spec_model(str(path), num_classes=10)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512], help="LeNet-5 image sides")
    p.add_argument("--alexnet-sizes", type=int, nargs="+", default=[355, 483, 739], help="AlexNet image sides")
    p.add_argument("--skip-alexnet", action="store_true")
    args = p.parse_args()
    torch.manual_seed(0)
    print(f"CPU: {cpu_name()}, torch threads {torch.get_num_threads()}; forward passes only, median of"
          f" {args.repeats} after a warm-up")  # fmt: skip
    runs = [("LeNet-5 (cnnkit's, conv1 padded), 28×28 windows", create_model("lenet5", num_classes=10, in_chans=1),
             args.sizes),
            ("LeNet-5 as published (no padding), 32×32 windows", unpadded_lenet5(), args.sizes)]  # fmt: skip
    if not args.skip_alexnet:
        runs.append(("AlexNet, 227×227 windows", create_model("alexnet", num_classes=1000), args.alexnet_sizes))
    for label, model, sizes in runs:
        model.eval()
        print(f"\n{label}, stride {fully_convolutional(model).stride}")
        print(f"{'image':>9} {'windows':>8} {'explicit':>11} {'convolutional':>14} {'ratio':>7} {'max |diff|':>11}")
        for size in sizes:
            r = compare(model, size, args.repeats)
            print(f"{size:>4}×{size:<4} {r['windows']:>8} {r['explicit_s'] * 1000:>8.1f} ms {r['conv_s'] * 1000:>11.1f}"
                  f" ms {r['ratio']:>6.1f}× {r['max_diff']:>11.2e}")  # fmt: skip


if __name__ == "__main__":
    main()
