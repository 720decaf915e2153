"""Small generated scenes (0-3 digits on photos, 32×32) written in three label formats, and one detect run
trained a few steps on them, shared by the detection tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnkit.data.synth import synthesize, write_scenes


@pytest.fixture(scope="session")
def det_scenes(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("det_scenes")
    found = synthesize("digits", size=32, objects_per_image=(0, 3), train=24, val=8, test=8, seed=5, progress=False)
    return write_scenes(out, found, ("yolo", "coco", "voc"), progress=False)


@pytest.fixture(scope="session")
def yolo_run(det_scenes, tmp_path_factory) -> Path:
    from cnnkit.cli import main

    out = tmp_path_factory.mktemp("det_runs") / "yolo"
    args = ["train", "--task", "detect", "--data", str(det_scenes["yolo"]), "--model", "yolo_smallcnn", "--set",
            "model.pretrained=false", "--epochs", "2", "--out", str(out)]  # fmt: skip
    assert main([*args, "--quiet", "--batch-size", "8"]) == 0
    return out
