"""``make demo``: train cnnkit's default model on Fashion-MNIST, evaluate it on the 10,000 test images,
and classify a few test images saved as PNG files — the whole train -> evaluate -> predict path.

Run it with ``python -m cnnkit.demo [--out DIR] [--epochs N]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from PIL import Image

from .config import build_config
from .data import load_data
from .errors import CnnkitError


def save_samples(run_dir: Path, n: int = 6) -> list[tuple[Path, str]]:
    """Save the first ``n`` Fashion-MNIST test images as PNG files -> [(path, true class)]."""
    cfg = build_config(["demo"])
    data = load_data(cfg.data, seed=cfg.train.seed)
    out = run_dir / "samples"
    out.mkdir(exist_ok=True)
    samples = []
    for i in range(n):
        img, label = data.test[i]
        path = out / f"test_{i}.png"
        Image.fromarray(img[0].numpy(), "L").save(path)
        samples.append((path, data.classes[label]))
    return samples


def run(out: str | None, epochs: int | None) -> int:
    from . import load
    from .evaluate.command import evaluate_run
    from .explain.units_report import units_section
    from .tasks import train

    t0 = time.perf_counter()
    cfg = build_config(["demo"], train__out=out, train__epochs=epochs)
    print(f"training {cfg.model.name} on {cfg.data.name} for {cfg.train.epochs} epochs")
    run_dir = train(cfg, report_sections=(units_section,))
    train_s = time.perf_counter() - t0
    m = evaluate_run(run_dir, split="test")
    print(
        f"\ntest accuracy on {m['n']:,} Fashion-MNIST test images: {m['top1_accuracy']:.4f}"
        f" (top-5 {m['top5_accuracy']:.4f}, loss {m['loss']:.4f})"
    )
    predictor = load(run_dir)
    samples = save_samples(run_dir)
    print("\npredictions on test images saved as PNG:")
    for (path, truth), p in zip(samples, predictor.predict([s for s, _ in samples], topk=2)):
        mark = "ok" if p.label == truth else "WRONG"
        print(f"  {path}: {p.label} {p.probability:.1%} (true: {truth}) {mark}")
    print(f"\ntraining took {train_s:.0f} s; total {time.perf_counter() - t0:.0f} s")
    print(f"run directory: {run_dir}")
    print(f"try: .venv/bin/cnnkit predict {run_dir} {samples[0][0]}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cnnkit.demo", description=__doc__)
    p.add_argument("--out", help="run directory (default runs/<model>-<data>-<time>)")
    p.add_argument("--epochs", type=int)
    args = p.parse_args(argv)
    try:
        return run(args.out, args.epochs)
    except CnnkitError as e:
        print(f"cnnkit: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
