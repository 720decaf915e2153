"""Small generated scenes (0-3 digits on photos, 48×48) written as COCO with RLE masks and as instance-id PNGs,
and one segment run trained a few steps on them, shared by the segmentation tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnkit.data.synth import synthesize, write_scenes


@pytest.fixture(scope="session")
def seg_scenes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("seg_scenes")
    found = synthesize("digits", size=48, objects_per_image=(0, 3), train=8, val=4, test=4, seed=3, progress=False)
    write_scenes(out, found, ("coco",), progress=False)
    return out


@pytest.fixture(scope="session")
def seg_run(seg_scenes, tmp_path_factory) -> Path:
    from cnnkit.cli import main

    out = tmp_path_factory.mktemp("seg_runs") / "maskrcnn"
    args = ["train", "--task", "segment", "--data", str(seg_scenes), "--epochs", "1", "--out", str(out)]
    assert main([*args, "--quiet", "--batch-size", "4"]) == 0
    return out
