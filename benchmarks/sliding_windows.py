"""Explicit vs convolutional sliding windows: the same classifier (LeNet-5, 28×28 windows) scoring every window
of one image, stride 4, crop by crop and in one fully convolutional pass. Prints both times, their ratio and the
CPU. Time it alone: other processes on the same cores distort both figures.

    python benchmarks/sliding_windows.py [--size 128] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import torch

from cnnkit.detection.windows import fully_convolutional, sliding_windows
from cnnkit.models import create_model


def cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


def best_time(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.manual_seed(0)
    model = create_model("lenet5", num_classes=10, in_chans=1).eval()
    fcn = fully_convolutional(model)
    image = torch.randn(1, args.size, args.size)
    kw = {"window": 28, "stride": 4, "threshold": 0.0, "iou": 0.5}
    slow_s, slow = best_time(lambda: sliding_windows(model, image, **kw), args.repeats)
    fast_s, fast = best_time(lambda: sliding_windows(fcn, image, convolutional=True, **kw), args.repeats)
    print(f"CPU: {cpu_name()}, torch threads {torch.get_num_threads()}")
    print(f"image {args.size}×{args.size}, LeNet-5, 28×28 windows, stride 4: {slow.windows} windows")
    print(f"explicit windows      {slow_s * 1000:8.1f} ms")
    print(f"convolutional windows {fast_s * 1000:8.1f} ms ({fast.windows} windows)")
    print(f"speed ratio (explicit / convolutional): {slow_s / fast_s:.1f}×")


if __name__ == "__main__":
    main()
