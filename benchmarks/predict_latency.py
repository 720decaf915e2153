"""Batch-1 latency of ``Predictor.predict`` (decode a PNG, preprocess, model, softmax, top-k) against calling
the model directly on a prepared tensor, for cnnkit's default model; and a folder's throughput in images/s. The
predictor runs the model's inference copy (:func:`cnnkit.runtime.inference_copy`), also timed directly: predict's
time over it is cnnkit's own overhead.

Both are timed in the same script, alternating, median of many calls, one thread per process is NOT forced (the
user's default). Prints the ratio (goal: within 1.2×) and the CPU. Run it alone. OpenMP's wait setting moves both
figures: ``GOMP_SPINCOUNT=10000 python benchmarks/predict_latency.py`` times what ``cnnkit predict`` sets
(:func:`cnnkit.machine.thread_settings`), ``OMP_WAIT_POLICY=PASSIVE`` what ``cnnkit train`` sets.

    python benchmarks/predict_latency.py [--repeat 300]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cnnkit.machine import cpu_name
from cnnkit.models import create_model
from cnnkit.predict import Predictor
from cnnkit.runcard import InputSpec, RunCard


def timed(fns: list, repeat: int, block: int = 10) -> list[float]:
    """Median seconds per call of each of ``fns``, timed alternately ``block`` calls at a time (so a change in the
    machine's load while it runs touches all of them alike), ``repeat`` calls each after 20 warm-up calls."""
    for fn in fns:
        for _ in range(20):
            fn()
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(max(1, repeat // block)):
        for fn, out in zip(fns, samples):
            for _ in range(block):
                t0 = time.perf_counter()
                fn()
                out.append(time.perf_counter() - t0)
    return [statistics.median(s) for s in samples]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=300)
    args = p.parse_args()
    model = create_model("smallcnn", num_classes=10, in_chans=1).eval()
    pre = {"mode": "L", "resize": [28, 28], "scale": 255.0, "mean": list(model.mean), "std": list(model.std)}
    card = RunCard(model="smallcnn", num_classes=10, classes=[str(i) for i in range(10)], input=InputSpec(1, 28, 28),
                   preprocessing=pre)  # fmt: skip
    predictor = Predictor(model, card)
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        paths = []
        for i in range(256):
            paths.append(Path(tmp) / f"{i}.png")
            Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), "L").save(paths[-1])
        x = predictor.normalize(predictor.to_tensor(paths[0])[None])
        fast, normalize = predictor.inference_model()
        xf = normalize(predictor.to_tensor(paths[0])[None])

        @torch.no_grad()
        def bare() -> torch.Tensor:
            return model(x)

        @torch.no_grad()
        def bare_fast() -> torch.Tensor:
            return fast(xf)

        direct, copy, full = timed([bare, bare_fast, lambda: predictor.predict([paths[0]])], args.repeat)
        t0 = time.perf_counter()
        predictor.predict(paths)
        folder = len(paths) / (time.perf_counter() - t0)
    print(f"CPU: {cpu_name()}, {torch.get_num_threads()} threads")
    print(f"model(x) on a prepared 1×1×28×28 tensor: {direct * 1e3:.3f} ms")
    print(f"its inference copy (BatchNorm folded, channels_last), which predict runs: {copy * 1e3:.3f} ms")
    print(f"predictor.predict([png]) (decode, preprocess, model, softmax, top-k): {full * 1e3:.3f} ms")
    print(f"ratio {full / direct:.2f}× the model as trained (goal ≤ 1.2×), {full / copy:.2f}× its inference copy"
          f" (cnnkit's own overhead); a folder of {len(paths)} PNGs: {folder:.0f} images/s")  # fmt: skip


if __name__ == "__main__":
    main()
