"""Instance segmentation on generated scenes: the issue's acceptance run (mask mAP@0.5 ≥ 0.80 on held-out scenes,
trained in under 15 minutes on 2 CPU cores), with its wall time.

``cnnkit data synth --objects digits --objects-per-image 1..3 --format coco`` (64×64 scenes, seed 0), then
``cnnkit train --task segment --model maskrcnn_smallcnn`` (AdamW, one-cycle, no mirroring: digits), then
``cnnkit evaluate`` on the held-out test split (its digits are other glyphs than training's). Prints mask and box
mAP, the wall time of each step, the CPU and the load average. Run it alone: another PyTorch process on the same
cores slows it down many times over.

    python benchmarks/segment.py [--train 1500] [--epochs 5] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from cnnkit.cli import main
from cnnkit.machine import cpu_name


def timed(*args: str) -> float:
    t0 = time.perf_counter()
    code = main([*args])
    if code:
        raise SystemExit(f"cnnkit {' '.join(args)} exited with {code}")
    return time.perf_counter() - t0


def run(out: Path, train: int, epochs: int, lr: float) -> None:
    synth_s = timed("data", "synth", "--objects", "digits", "--objects-per-image", "1..3", "--format", "coco",
                    "--train", str(train), "--val", "200", "--test", "400", "--out", str(out / "scenes"),
                    "--quiet")  # fmt: skip
    train_s = timed("train", "--task", "segment", "--model", "maskrcnn_smallcnn", "--data", str(out / "scenes"),
                    "--epochs", str(epochs), "--batch-size", "8", "--out", str(out / "run"), "--quiet",
                    *(a for kv in ("optim.name=adamw", f"optim.lr={lr}", "optim.weight_decay=1e-4", "data.hflip=false",
                                   "train.report=false") for a in ("--set", kv)))  # fmt: skip
    eval_s = timed("evaluate", str(out / "run"), "--split", "test", "--json", str(out / "test.json"))
    m = json.loads((out / "test.json").read_text())
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"\nCPU: {cpu_name()}, {os.cpu_count()} cores, load average (1, 5, 15 min) after the run: {load}")
    print(f"synth {synth_s:.0f} s, train {train_s:.0f} s ({train} scenes × {epochs} epochs), evaluate {eval_s:.0f} s")
    print(f"test ({m['n']} scenes, {m['objects']} objects): mask mAP@0.5 {m['segm_map_50']:.4f} (goal ≥ 0.80),"
          f" mask mAP@[.5:.95] {m['segm_map']:.4f}, box mAP@0.5 {m['bbox_map_50']:.4f};"
          f" train time {'under' if train_s < 900 else 'OVER'} 15 min")  # fmt: skip


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=1500, help="training scenes")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--lr", type=float, default=2e-3, help="AdamW's peak learning rate (one-cycle)")
    p.add_argument("--out", help="keep the scenes and the run here (default: a temporary folder)")
    args = p.parse_args()
    if args.out:
        run(Path(args.out), args.train, args.epochs, args.lr)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run(Path(tmp), args.train, args.epochs, args.lr)
