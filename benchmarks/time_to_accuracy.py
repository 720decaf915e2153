"""Time to accuracy: wall time for a recipe (default ``fast``) to reach 93 % and 94 % Fashion-MNIST test accuracy.

The clock covers everything training does (data loading, epochs, validation, checkpoints) and stops while this
script measures test accuracy after each epoch — a measurement only; the run itself never sees the test split.
It runs with the thread settings of ``cnnkit train`` (a passive OpenMP wait). Each epoch is scored as the model
predicts and, beside it, with horizontal-flip test-time augmentation as ``cnnkit evaluate RUN --tta`` scores it
(the mean of the two probabilities; flips are safe for clothes).
Usage: ``python benchmarks/time_to_accuracy.py [--recipe fast] [--targets 0.93 0.94] [--set key=value …]``.
On a CPU with AVX-512, ``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`` and ``--set train.precision=fp32``
approximate an AVX2-only CPU (same cores, narrower vectors): oneDNN's convolutions and ATen's kernels then run
their AVX2 code only.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from cnnkit.machine import configure_threads

configure_threads(command="train")  # the thread settings `cnnkit train` runs with; before torch reads them

import torch  # noqa: E402

from cnnkit.config import build_config  # noqa: E402
from cnnkit.engine import Trainer  # noqa: E402
from cnnkit.evaluate.ensemble import combine, hflip  # noqa: E402
from cnnkit.evaluate.metrics import classification_metrics, collect_logits  # noqa: E402
from cnnkit.machine import cpu_name  # noqa: E402
from cnnkit.tasks.classify import Classify  # noqa: E402


class TimedTrainer(Trainer):
    """A Trainer that records (training wall time, test accuracy, with flip TTA) after each epoch."""

    def __init__(self, *args, **kwargs) -> None:
        self.t0 = time.perf_counter()
        self.paused = 0.0
        self.points: list[tuple[int, float, float, float]] = []
        super().__init__(*args, **kwargs)

    def end_epoch(self, row: dict[str, float]) -> None:
        super().end_epoch(row)
        t = time.perf_counter()
        elapsed = t - self.t0 - self.paused
        logits, labels = collect_logits(self.model, self.data.test, self.normalize, dtype=self.dtype)
        flipped, _ = collect_logits(self.model, self.data.test, self.normalize, dtype=self.dtype, transform=hflip)
        both = combine([torch.log_softmax(logits.float(), 1), torch.log_softmax(flipped.float(), 1)])
        acc, tta = (classification_metrics(z, labels)["top1_accuracy"] for z in (logits, both))
        self.paused += time.perf_counter() - t
        self.points.append((self.epoch, elapsed, acc, tta))
        print(f"epoch {self.epoch}: {elapsed:7.1f} s  test accuracy {acc:.4f}, with flip TTA {tta:.4f}", flush=True)


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
    wait = os.environ.get("OMP_WAIT_POLICY", "OpenMP default")
    print(
        f"CPU: {cpu_name()}, {torch.get_num_threads()} threads ({wait} wait), {precision} ({trainer.precision_reason})"
    )
    for target in args.targets:
        for column, how in ((2, ""), (3, " with flip TTA")):
            hit = next(((p[0], p[1]) for p in trainer.points if p[column] >= target), None)
            best = max(p[column] for p in trainer.points)
            msg = f"epoch {hit[0]}, {hit[1]:.0f} s ({hit[1] / 60:.1f} min)" if hit else f"not reached (best {best:.4f})"
            print(f"time to {target:.0%} test accuracy{how}: {msg}")


if __name__ == "__main__":
    main()
