"""Training throughput: cnnkit's training step against the usual tutorial loop, measured in the same process.

Both train the same model at the same batch size on the same Fashion-MNIST training images held in memory:

- baseline: float32 images in a ``TensorDataset``, ``DataLoader(shuffle=True)``, ``model(x)``, cross-entropy,
  ``backward``, SGD step — the loop of the PyTorch tutorial;
- cnnkit: a ``Trainer`` built from a recipe (default ``fast``): uint8 batches sliced and normalised on the fly,
  channels_last, and bf16 autocast where the CPU has native bf16 (``precision: auto``).

Rounds alternate (baseline, cnnkit, baseline, …) and the medians are compared, so the noise of a shared machine
hits both sides. Usage: ``python benchmarks/train_throughput.py [--recipe fast] [--rounds 5] [--steps 20]
[--set key=value …]``.
On a CPU with AVX-512, ``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`` and ``--set train.precision=fp32``
approximate an AVX2-only CPU (same cores, narrower vectors): oneDNN's convolutions and ATen's kernels then run
their AVX2 code only.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from cnnkit.config import build_config
from cnnkit.engine import Trainer
from cnnkit.models import create_model
from cnnkit.runtime import batches
from cnnkit.tasks.classify import Classify


def baseline_round(images: torch.Tensor, labels: torch.Tensor, model, opt, batch_size: int, steps: int) -> float:
    """images/s of the tutorial loop over ``steps`` batches. images: float32 Tensor[N, C, H, W], normalised."""
    loader = DataLoader(TensorDataset(images, labels), batch_size=batch_size, shuffle=True)
    seen, t0 = 0, time.perf_counter()
    for i, (x, y) in enumerate(loader):
        if i == steps:
            break
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(y)
    return seen / (time.perf_counter() - t0)


def cnnkit_round(trainer: Trainer, steps: int, seed: int) -> float:
    """images/s of cnnkit's own step (data slicing, normalisation, augmentation and all) over ``steps`` batches."""
    trainer.net.train()
    seen, t0 = 0, time.perf_counter()
    for i, (x, y) in enumerate(batches(trainer.data.train, trainer.batch_size, shuffle=True, seed=seed)):
        if i == steps:
            break
        trainer.step(x, y)
        seen += len(y)
    return seen / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="fast")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--set", action="append", default=[], help="a recipe value, e.g. train.precision=fp32")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = build_config([args.recipe], args.set, train__out=tmp)
        trainer = Trainer(cfg, __import__("pathlib").Path(tmp), Classify(), log=lambda *_: None, progress=False)
    data = trainer.data.train
    x = (data.images.float() / 255 - trainer.model.mean[0]) / trainer.model.std[0]
    model = create_model(cfg.model.name, num_classes=len(trainer.data.classes), in_chans=trainer.data.in_chans)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr, momentum=cfg.optim.momentum)
    base, ours = [], []
    baseline_round(x, data.labels, model, opt, trainer.batch_size, 3)  # warm-up both
    cnnkit_round(trainer, 3, seed=0)
    for r in range(args.rounds):
        base.append(baseline_round(x, data.labels, model, opt, trainer.batch_size, args.steps))
        ours.append(cnnkit_round(trainer, args.steps, seed=r + 1))
        print(f"round {r + 1}: baseline {base[-1]:7.0f} img/s   cnnkit {ours[-1]:7.0f} img/s", flush=True)
    b, o = statistics.median(base), statistics.median(ours)
    precision = str(trainer.dtype or torch.float32).replace("torch.", "")
    print(
        f"\nmodel {cfg.model.name}, batch {trainer.batch_size}, {torch.get_num_threads()} threads, "
        f"cnnkit precision {precision}, channels_last {cfg.train.channels_last}, augment {cfg.data.augment}"
    )
    print(f"median: baseline {b:.0f} img/s, cnnkit {o:.0f} img/s -> ratio {o / b:.2f}x")


if __name__ == "__main__":
    main()
