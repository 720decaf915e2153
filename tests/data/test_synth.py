"""Synthetic scenes: exact boxes and masks, determinism, and every label format reading back the same boxes."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit.cli import data as data_cli
from cnnkit.data.labels import open_box_dataset
from cnnkit.data.synth import SceneSet, synthesize, write_scenes
from cnnkit.errors import CnnkitError
from tests.conftest import make_folder

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools, numpy 2

SMALL = {"train": 8, "val": 3, "test": 2}


@pytest.fixture(scope="module")
def scenes() -> SceneSet:
    return synthesize("digits", objects_per_image=(1, 3), size=48, seed=7, progress=False, **SMALL)


def tight_box(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_boxes_are_the_tight_boxes_of_disjoint_masks_inside_the_image(scenes):
    assert scenes.classes == [str(d) for d in range(10)] and scenes.hflip is False
    assert {k: len(v) for k, v in scenes.splits.items()} == SMALL
    counts = set()
    for scene in (s for split in scenes.splits.values() for s in split):
        n = len(scene.labels)
        counts.add(n)
        assert scene.image.shape == (48, 48, 3) and scene.image.dtype == np.uint8
        assert scene.masks.shape == (n, 48, 48) and scene.boxes.shape == (n, 4) and 1 <= n <= 3
        assert scene.masks.sum(0).max() <= 1  # no pixel belongs to two objects
        for box, mask in zip(scene.boxes, scene.masks):
            assert box.tolist() == tight_box(mask)
            assert 0 <= box[0] < box[2] <= 48 and 0 <= box[1] < box[3] <= 48
    assert len(counts) > 1  # the count is drawn per scene


def test_same_seed_same_bytes_other_seed_other_scenes(tmp_path):
    a, b, c = (synthesize("digits", size=32, seed=s, progress=False, train=4, val=2, test=0) for s in (3, 3, 4))
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a.splits["train"], b.splits["train"]))
    assert not np.array_equal(a.splits["train"][0].image, c.splits["train"][0].image)
    for name, s in (("a", a), ("b", b)):
        write_scenes(tmp_path / name, s, ("yolo", "coco", "voc", "csv"), progress=False)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_every_format_reads_back_the_scenes(tmp_path, scenes):
    from pycocotools import mask as mask_utils

    paths = write_scenes(tmp_path, scenes, ("yolo", "coco", "voc", "csv"), progress=False)
    assert (tmp_path / "images/train/000000.png").is_file() and (tmp_path / "VOC/JPEGImages/val_000002.png").is_file()
    assert (tmp_path / "annotations/instances_test.json").is_file() and (tmp_path / "labels/val/000001.txt").is_file()
    for fmt, path in paths.items():
        ds = open_box_dataset(path)
        assert (ds.format, ds.skipped, list(ds.splits)) == (fmt, [], ["train", "val", "test"])
        assert ds.hflip is (False if fmt == "yolo" else None)
        for split, items in scenes.splits.items():
            for scene, got in zip(items, ds.splits[split], strict=True):
                assert [ds.classes[i.label] for i in got.instances] == [scenes.classes[c] for c in scene.labels]
                np.testing.assert_allclose([i.box for i in got.instances], scene.boxes, atol=1e-3)
                if fmt == "coco":
                    rles = [i.segmentation for i in got.instances]
                    assert np.array_equal(mask_utils.decode(rles).transpose(2, 0, 1).astype(bool), scene.masks)


def test_instance_id_masks_agree_with_the_boxes(tmp_path, scenes):
    write_scenes(tmp_path, scenes, ("csv",), progress=False)
    for split, items in scenes.splits.items():
        for i, scene in enumerate(items):
            ids = np.asarray(Image.open(tmp_path / "masks" / split / f"{i:06d}.png"))
            assert ids.max() == len(scene.labels)
            for j, box in enumerate(scene.boxes, 1):
                assert tight_box(ids == j) == box.tolist()
            image = np.asarray(Image.open(tmp_path / "images" / split / f"{i:06d}.png"))
            assert np.array_equal(image, scene.image)


def test_refuses_a_non_empty_out_unless_overwrite(tmp_path, scenes):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CnnkitError, match="notes.txt.*--force"):
        write_scenes(tmp_path, scenes, progress=False)
    (tmp_path / "images/train").mkdir(parents=True)
    (tmp_path / "images/train/999999.png").write_bytes(b"stale")
    write_scenes(tmp_path, scenes, ("yolo",), overwrite=True, progress=False)
    assert not (tmp_path / "images/train/999999.png").exists() and (tmp_path / "notes.txt").read_text() == "mine"
    with pytest.raises(CnnkitError, match="label formats"):
        write_scenes(tmp_path / "x", scenes, ("yolo", "kitti"))


def test_class_folder_objects_on_own_backgrounds(tmp_path):
    make_folder(tmp_path / "shapes", classes=("dark", "light"), per_class=4)
    for i in range(2):
        photo = np.random.default_rng(i).integers(0, 255, (40, 60, 3), dtype=np.uint8)
        (tmp_path / "photos").mkdir(exist_ok=True)
        Image.fromarray(photo).save(tmp_path / "photos" / f"{i}.jpg")
    s = synthesize(tmp_path / "shapes", backgrounds=tmp_path / "photos", size=(40, 56), seed=0, progress=False, **SMALL)
    assert s.classes == ["dark", "light"] and s.hflip is None
    scene = s.splits["val"][0]
    assert scene.image.shape == (40, 56, 3) and scene.boxes.tolist() == [tight_box(scene.masks[0])]


def test_bad_options_are_one_line_errors(tmp_path):
    with pytest.raises(CnnkitError, match="objects per image"):
        synthesize("digits", objects_per_image=(3, 1), progress=False)
    with pytest.raises(CnnkitError, match="no folder"):
        synthesize(tmp_path / "none", progress=False)
    with pytest.raises(CnnkitError, match="room for 9 objects"):
        synthesize("digits", objects_per_image=9, size=8, scale=(0.9, 1.0), train=1, val=0, test=0, progress=False)


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(),
    reason="Fashion-MNIST is not installed (Debian package dataset-fashion-mnist)",
)
def test_fashion_mnist_objects():
    s = synthesize("fashion-mnist", objects_per_image=2, train=2, val=1, test=1, seed=1, progress=False)
    assert s.classes[0] == "T-shirt/top" and s.hflip is True
    for scene in s.splits["train"]:
        assert len(scene.labels) == 2 and [b.tolist() for b in scene.boxes] == [tight_box(m) for m in scene.masks]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnnkit")
    data_cli.add_commands(parser.add_subparsers(dest="command"))
    return parser


def test_cli_synth_writes_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "scenes"
    argv = ["data", "synth", "--objects-per-image", "1..2", "--size", "32", "--train", "4", "--val", "2"]
    argv += ["--test", "0", "--format", "coco,yolo", "--seed", "1", "--out", str(out), "--quiet"]
    args = _parser().parse_args(argv)
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "4 train, 2 val scenes" in printed and f"--data {out / 'annotations'}" in printed
    assert open_box_dataset(out).format == "yolo" and open_box_dataset(out / "annotations").format == "coco"
    with pytest.raises(CnnkitError, match="--force"):
        args.func(args)
    args = _parser().parse_args([*argv, "--force"])
    assert args.func(args) == 0


@pytest.mark.parametrize("text, expected", [("3", (3, 3)), ("1..4", (1, 4)), ("0..2", (0, 2))])
def test_cli_count_range(text, expected):
    assert data_cli.count_range(text) == expected


@pytest.mark.parametrize("bad", [["--objects-per-image", "4..1"], ["--objects-per-image", "x"], ["--format", "kitti"]])
def test_cli_rejects_bad_values(bad, capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["data", "synth", "--out", "o", *bad])
    assert "expected" in capsys.readouterr().err


def test_scenes_without_objects_round_trip(tmp_path):
    s = synthesize("digits", objects_per_image=(0, 1), size=24, train=6, val=0, test=0, seed=2, progress=False)
    counts = [len(scene.labels) for scene in s.splits["train"]]
    assert 0 in counts and 1 in counts and list(s.splits) == ["train"]
    for fmt, path in write_scenes(tmp_path, s, ("yolo", "coco", "voc", "csv"), progress=False).items():
        assert [len(im.instances) for im in open_box_dataset(path).splits["train"]] == counts, fmt
