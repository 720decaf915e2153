"""Time to accuracy: wall time for a recipe (default ``fast``) to reach 93 % and 94 % Fashion-MNIST test accuracy.

The clock covers everything training does (data loading, epochs, validation, checkpoints) and stops while this
script measures test accuracy after each epoch — a measurement only; the run itself never sees the test split.
Usage: ``python benchmarks/time_to_accuracy.py [--recipe fast] [--targets 0.93 0.94] [--set key=value …]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from cnnkit.config import build_config
from cnnkit.engine import Trainer
from cnnkit.evaluate.metrics import classification_metrics, collect_logits
from cnnkit.machine import cpu_name
from cnnkit.tasks.classify import Classify


class TimedTrainer(Trainer):
    """A Trainer that records (training wall time, test accuracy) after each epoch."""

    def __init__(self, *args, **kwargs) -> None:
        self.t0 = time.perf_counter()
        self.paused = 0.0
        self.points: list[tuple[int, float, float]] = []
        super().__init__(*args, **kwargs)

    def end_epoch(self, row: dict[str, float]) -> None:
        super().end_epoch(row)
        t = time.perf_counter()
        elapsed = t - self.t0 - self.paused
        logits, labels = collect_logits(self.model, self.data.test, self.normalize, dtype=self.dtype)
        acc = classification_metrics(logits, labels)["top1_accuracy"]
        self.paused += time.perf_counter() - t
        self.points.append((self.epoch, elapsed, acc))
        print(f"epoch {self.epoch}: {self.points[-1][1]:7.1f} s  test accuracy {acc:.4f}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="fast")
    p.add_argument("--targets", type=float, nargs="+", default=[0.93, 0.94])
    p.add_argument("--set", action="append", default=[])
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = build_config([args.recipe], args.set, train__out=tmp, train__report=False)
        trainer = TimedTrainer(cfg, Path(tmp), Classify(), log=print, progress=False)
        trainer.fit()
    print(f"\nrecipe {args.recipe}: {cfg.model.name}, {cfg.train.epochs} epochs, batch {cfg.train.batch_size}")
    precision = str(trainer.dtype or torch.float32).replace("torch.", "")
    print(f"CPU: {cpu_name()}, {torch.get_num_threads()} threads, {precision} ({trainer.precision_reason})")
    for target in args.targets:
        hit = next(((e, s) for e, s, a in trainer.points if a >= target), None)
        best = max(a for _, _, a in trainer.points)
        msg = f"epoch {hit[0]}, {hit[1]:.0f} s ({hit[1] / 60:.1f} min)" if hit else f"not reached (best {best:.4f})"
        print(f"time to {target:.0%} test accuracy: {msg}")


if __name__ == "__main__":
    main()
