"""Classification + localisation on generated scenes: the issue's acceptance run, with its wall time.

``cnnkit data synth --objects digits --objects-per-image 1`` (2,000 / 400 / 400 scenes of 64×64, seed 0), then
``cnnkit train --task localize`` with the task's defaults, then ``cnnkit evaluate`` on the held-out test split.
Prints the class accuracy, mean IoU and localisation accuracy (class right and IoU ≥ 0.5), the wall time of
each step and the CPU. Run it alone: another PyTorch process on the same cores slows it down many times over.

    python benchmarks/localize.py [--format yolo|coco|voc] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
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


def run(out: Path, fmt: str) -> None:
    synth_s = timed("data", "synth", "--objects", "digits", "--objects-per-image", "1", "--format", "yolo,coco,voc",
                    "--out", str(out / "scenes"), "--quiet")  # fmt: skip
    data = {"yolo": "data.yaml", "coco": "annotations", "voc": "VOC"}[fmt]
    train_s = timed("train", "--task", "localize", "--data", str(out / "scenes" / data), "--out", str(out / "run"),
                    "--quiet")  # fmt: skip
    eval_s = timed("evaluate", str(out / "run"), "--split", "test", "--json", str(out / "test.json"))
    m = json.loads((out / "test.json").read_text())
    print(f"\nCPU: {cpu_name()}, format {fmt}")
    print(f"synth {synth_s:.0f} s, train {train_s:.0f} s, evaluate {eval_s:.0f} s")
    print(f"test: class accuracy {m['accuracy']:.4f}, mean IoU {m['mean_iou']:.4f},"
          f" localisation accuracy {m['loc_accuracy']:.4f} (goal ≥ 0.90)")  # fmt: skip


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--format", choices=("yolo", "coco", "voc"), default="yolo")
    p.add_argument("--out", help="keep the scenes and the run here (default: a temporary folder)")
    args = p.parse_args()
    if args.out:
        run(Path(args.out), args.format)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run(Path(tmp), args.format)
