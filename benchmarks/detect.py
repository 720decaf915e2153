"""Object detection on generated scenes: the issue's acceptance run, with its wall times.

``cnnkit data synth --objects digits --objects-per-image 1..6 --size 128`` (2,000 / 400 / 400 scenes, seed 0),
then for each detector ``cnnkit train --task detect`` with the task's defaults (the default is YOLO on
EfficientNet-Lite0 with its ImageNet weights, ``configs/tasks/detect.yaml``) and ``cnnkit evaluate`` on the held-out
test split. Prints mAP@0.5 and mAP@[.5:.95] (COCO, pycocotools), the wall time of each step, the CPU and the load
average before and after (the goal: mAP@0.5 ≥ 0.90 trained in under 15 minutes on 2 CPU cores). With ``--picture``
it draws the detections (score ≥ 0.25) of the first detector on the first eight test scenes.

Run it alone: another PyTorch process on the same cores slows it down many times over.

    python benchmarks/detect.py [--models default fcos_efficientnet_lite0] [--set optim.lr=0.0001] [--out DIR]
                                [--picture PNG]

torchvision's detectors need a lower learning rate than the YOLO recipe's AdamW 2e-3 (their heads start from
weights of std 0.01, which such steps wipe out: FCOS's box regression, behind a ReLU, then predicts nothing):
measured with ``--set optim.lr=0.0001``.
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


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def timed(*args: str) -> float:
    t0 = time.perf_counter()
    code = main([*args])
    if code:
        raise SystemExit(f"cnnkit {' '.join(args)} exited with {code}")
    return time.perf_counter() - t0


def picture(run: Path, scenes: Path, path: Path) -> Path:
    """The first eight test scenes with the run's detections drawn (class and score), four to a row."""
    import torch

    from cnnkit import tasks
    from cnnkit.drawing import draw_boxes, image_grid
    from cnnkit.tasks.localize_eval import full_image, save_png

    images = sorted((scenes / "images" / "test").glob("*.png"))[:8]
    found = tasks.load(run).predict(images)
    tiles = []
    for im, p in zip(images, found):
        boxes = torch.tensor([o.box for o in p.objects]).reshape(-1, 4)
        tiles.append(draw_boxes(full_image(im), boxes, [f"{o.label} {o.score:.2f}" for o in p.objects],
                                ["lime"] * len(p.objects), scale=3))  # fmt: skip
    return save_png(image_grid(tiles, cols=4), path)


def run(out: Path, models: list[str], picture_path: Path | None, sets: list[str]) -> None:
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; load average (1, 5, 15 min) at the start: {load()}")
    synth_s = timed("data", "synth", "--objects", "digits", "--objects-per-image", "1..6", "--size", "128",
                    "--out", str(out / "scenes"), "--quiet")  # fmt: skip
    rows = []
    for name in models:
        run_dir = out / name
        model = [] if name == "default" else ["--model", name, *(a for kv in sets for a in ("--set", kv))]
        train_s = timed("train", "--task", "detect", "--data", str(out / "scenes" / "data.yaml"), *model, "--out",
                        str(run_dir), "--quiet")  # fmt: skip
        eval_s = timed("evaluate", str(run_dir), "--split", "test", "--json", str(out / f"{name}.json"))
        m = json.loads((out / f"{name}.json").read_text())
        card = json.loads((run_dir / "model.json").read_text())
        rows.append((card["model"], m, train_s, eval_s))
        if picture_path and len(rows) == 1:
            print(f"detections drawn to {picture(run_dir, out / 'scenes', picture_path)}")
    print(f"\nCPU: {cpu_name()}; load average at the end: {load()}")
    print(f"synth {synth_s:.0f} s (2,000 / 400 / 400 scenes of 128×128, 1–6 digits each)")
    for model, m, train_s, eval_s in rows:
        print(f"{model}: test mAP@0.5 {m['map_50']:.4f}, mAP@[.5:.95] {m['map']:.4f}, mAP@0.75 {m['map_75']:.4f};"
              f" train {train_s / 60:.1f} min, evaluate {eval_s:.0f} s (goal: mAP@0.5 ≥ 0.90 in < 15 min)")  # fmt: skip


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["default"], help="detectors to train ('default': the task's)")
    p.add_argument("--out", help="keep the scenes and the runs here (default: a temporary folder)")
    p.add_argument("--picture", type=Path, help="draw the first detector's boxes on eight test scenes here (PNG)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config overrides for the detectors other than 'default' (e.g. optim.lr=0.0001)")  # fmt: skip
    args = p.parse_args()
    if args.out:
        run(Path(args.out), args.models, args.picture, args.set)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run(Path(tmp), args.models, args.picture, args.set)
