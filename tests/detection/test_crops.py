"""``cnnkit data crops``: a box dataset's objects and background windows as the class folders a window classifier
trains on, checked against the label files; and a classifier trained on them running ``cnnkit detect windows``."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.ops import box_iou

from cnnkit.cli import main
from cnnkit.data.crops import BACKGROUND, read_manifest, square_window
from cnnkit.data.labels import open_box_dataset

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools, numpy 2


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """6/2/2 scenes of 1-3 digits, 64×64, labelled as YOLO and COCO (the same image files)."""
    out = tmp_path_factory.mktemp("crops") / "scenes"
    args = ["data", "synth", "--train", "6", "--val", "2", "--test", "2", "--size", "64", "--objects-per-image",
            "1..3", "--format", "yolo,coco", "--seed", "0", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def crops(scenes) -> Path:
    out = scenes.parent / "crops"
    assert main(["data", "crops", str(scenes / "data.yaml"), "--out", str(out), "--quiet"]) == 0
    return out


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_class_folders_are_the_classes_of_the_boxes_plus_background(scenes, crops):
    data = open_box_dataset(scenes / "data.yaml")
    seen = set()
    for split, images in data.splits.items():
        labelled = {data.classes[i.label] for im in images for i in im.instances}
        folders = {d.name for d in (crops / split).iterdir()}
        assert folders == labelled | {BACKGROUND}, split
        seen |= folders
    assert seen <= {*data.classes, BACKGROUND} and len(seen) > 3


def test_one_object_crop_per_box_and_as_many_background_windows(scenes, crops):
    data = open_box_dataset(scenes / "data.yaml")  # the boxes as the YOLO label files give them
    for split, images in data.splits.items():
        boxes = Counter(data.classes[i.label] for im in images for i in im.instances)
        written = Counter(p.parent.name for p in (crops / split).rglob("*.png"))
        assert written - Counter({BACKGROUND: written[BACKGROUND]}) == boxes, split
        assert written[BACKGROUND] == boxes.total() > 0, split  # --background-ratio 1.0


def test_windows_are_squares_in_the_image_and_background_misses_every_box(scenes, crops):
    data = open_box_dataset(scenes / "data.yaml")
    labelled = {im.path: im for images in data.splits.values() for im in images}
    rows = read_manifest(crops)
    assert {r["file"] for r in rows} == {str(p.relative_to(crops)) for p in crops.rglob("*.png")}
    for r in rows:
        im = labelled[Path(r["source"])]
        x1, y1, x2, y2 = (int(r[k]) for k in ("x1", "y1", "x2", "y2"))
        assert x2 - x1 == y2 - y1 > 0 and x1 >= 0 and y1 >= 0 and x2 <= im.width and y2 <= im.height
        boxes = torch.tensor([i.box for i in im.instances], dtype=torch.float64)
        iou = box_iou(torch.tensor([[x1, y1, x2, y2]], dtype=torch.float64), boxes)[0]
        if r["class"] == BACKGROUND:
            assert iou.max() < 0.1, r
        else:  # the window around one of this image's boxes of that class: it holds the box's centre
            cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
            inside = (cx >= x1) & (cx <= x2) & (cy >= y1) & (cy <= y2)
            names = [data.classes[i.label] for i in im.instances]
            assert any(inside[k] and names[k] == r["class"] for k in range(len(names))), r


def test_crops_are_size_pixels_and_keep_the_source_colour(crops):
    with Image.open(next(crops.rglob("*.png"))) as im:
        assert im.size == (28, 28) and im.mode == "RGB"  # synth scenes are RGB
    assert all(Image.open(p).size == (28, 28) for p in crops.rglob("*.png"))


def test_grayscale_source_gives_grayscale_crops_of_the_asked_size(tmp_path, cli):
    rng, data = np.random.default_rng(0), tmp_path / "data"
    data.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 255, (40, 50), dtype=np.uint8), "L").save(data / name)
    (data / "labels.csv").write_text("path,label,x,y,w,h\na.png,cat,5,6,12,9\nb.png,dog,30,20,15,15\n")
    code, out, _ = cli("data", "crops", data / "labels.csv", "--out", tmp_path / "out", "--size", "16", "--quiet")
    assert code == 0 and "2 object and 2 background crops (16×16)" in out
    written = sorted((tmp_path / "out").rglob("*.png"))
    assert {p.parent.name for p in written} == {"cat", "dog", BACKGROUND}  # no splits in the CSV: OUT/<class>/
    assert all(Image.open(p).mode == "L" and Image.open(p).size == (16, 16) for p in written)


def test_a_class_train_lacks_is_pointed_out(tmp_path, cli):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (40, 40), (90, 120, 30)).save(data / name)
    (data / "labels.csv").write_text("path,label,x,y,w,h,split\na.png,cat,5,6,12,9,train\nb.png,dog,3,4,10,10,val\n")
    code, out, _ = cli("data", "crops", data / "labels.csv", "--out", tmp_path / "out", "--quiet")
    assert code == 0 and "note: no train crops of dog;" in out


def test_same_seed_same_bytes_and_yolo_and_coco_give_the_same_crops(scenes, crops, cli):
    again, coco, other = (scenes.parent / n for n in ("again", "coco", "other"))
    assert cli("data", "crops", scenes / "data.yaml", "--out", again, "--quiet")[0] == 0
    assert cli("data", "crops", scenes / "annotations", "--out", coco, "--quiet")[0] == 0
    assert cli("data", "crops", scenes / "data.yaml", "--out", other, "--seed", "1", "--quiet")[0] == 0
    assert files(again) == files(crops) == files(coco)
    objects = {k: v for k, v in files(other).items() if f"/{BACKGROUND}/" not in k and k.endswith(".png")}
    assert objects.items() <= files(crops).items() and files(other) != files(crops)  # only the background moved


def test_a_non_empty_out_is_refused_unless_force_and_out_inside_the_data_always(scenes, crops, cli):
    code, out, err = cli("data", "crops", scenes / "data.yaml", "--out", crops, "--quiet")
    assert code == 2 and not out and len(err.strip().splitlines()) == 1 and "--force" in err
    keep = crops / "notes.txt"
    keep.write_text("mine")
    stale = crops / "train" / BACKGROUND / "stale.png"
    stale.write_bytes(b"")
    try:
        assert cli("data", "crops", scenes / "data.yaml", "--out", crops, "--force", "--quiet")[0] == 0
        assert keep.read_text() == "mine" and not stale.exists()  # only its own layout is replaced
    finally:
        keep.unlink()
    code, _, err = cli("data", "crops", scenes / "data.yaml", "--out", scenes / "crops", "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "outside the dataset" in err
    assert not (scenes / "crops").exists()


def test_a_dataset_without_boxes_is_refused(tmp_path, cli):
    empty = tmp_path / "empty"
    assert cli("data", "synth", "--objects-per-image", "0", "--train", "2", "--val", "0", "--test", "0", "--size",
               "32", "--out", empty, "--quiet")[0] == 0  # fmt: skip
    code, out, err = cli("data", "crops", empty / "data.yaml", "--out", tmp_path / "out", "--quiet")
    assert code == 2 and not out and len(err.strip().splitlines()) == 1 and "no boxes" in err


def test_square_window_is_clamped_to_the_image():
    assert square_window(2, 3, 10, 64, 64) == (0, 0, 10, 10)  # shifted inside at the corner
    assert square_window(30, 10, 100, 64, 48) == (6, 0, 54, 48)  # at most the shorter side
    assert square_window(32, 32, 11.9, 64, 64) == (26, 26, 38, 38)


def test_a_classifier_trained_on_the_crops_scores_every_window(scenes, crops, cli):
    counts = {s: {p.name for p in (crops / s).iterdir()} for s in ("train", "val", "test")}
    assert counts["val"] | counts["test"] <= counts["train"], "train lacks a class: cnnkit train would refuse"
    run = scenes.parent / "run"
    code, _, err = cli("train", "--data", crops, "--model", "smallcnn", "--epochs", "1", "--image-size", "28",
                       "--batch-size", "16", "--set", "train.report=false", "--out", run, "--quiet")  # fmt: skip
    assert code == 0, err
    scene = sorted((scenes / "images" / "test").glob("*.png"))[0]
    code, out, err = cli("detect", "windows", run, scene, "--window", "28", "--stride", "4")
    assert code == 0, err
    found = re.match(r"(\d+) windows scored \(explicit\)", out)
    assert found and int(found[1]) == ((64 - 28) // 4 + 1) ** 2
