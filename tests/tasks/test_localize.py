"""Classification + localisation: data in every label format, the box head, loss, metrics, augmentation, and
the commands (train, evaluate, predict, report) on a run trained a few steps on generated scenes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from cnnkit.config import build_config
from cnnkit.data.boxes import load_box_data, normalised_boxes, pixel_boxes
from cnnkit.data.labels import LabelError
from cnnkit.data.synth import synthesize, write_scenes
from cnnkit.models import create_model
from cnnkit.tasks.localize import BoxAugment, Localize, Localizer, localisation_figures


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> dict[str, Path]:
    """40/12/12 digit scenes of 32×32, written as YOLO, COCO and VOC."""
    out = tmp_path_factory.mktemp("scenes")
    found = synthesize("digits", size=32, train=40, val=12, test=12, seed=3, progress=False)
    return write_scenes(out, found, ("yolo", "coco", "voc"), progress=False)


@pytest.fixture(scope="module")
def loc_run(scenes, tmp_path_factory) -> Path:
    from cnnkit.cli import main

    out = tmp_path_factory.mktemp("runs") / "loc"
    args = ["train", "--task", "localize", "--data", str(scenes["yolo"]), "--epochs", "2", "--out", str(out)]
    assert main([*args, "--quiet", "--batch-size", "16"]) == 0
    return out


def test_the_three_formats_give_the_same_examples(scenes):
    loaded = {f: load_box_data(build_config(sets=[f"data.name={p}"]).data) for f, p in scenes.items()}
    ref = loaded["yolo"]
    assert ref.hflip is False and ref.image_size == (32, 32) and len(ref.train) == 40
    for fmt in ("coco", "voc"):
        other = loaded[fmt]
        assert other.classes == ref.classes
        for split in ("train", "val", "test"):
            a, b = getattr(ref, split), getattr(other, split)
            by_name = {Path(i).name.split("_")[-1]: k for k, i in enumerate(b.ids)}
            order = torch.tensor([by_name[Path(i).name] for i in a.ids])
            assert torch.equal(a.labels, b.labels[order]) and torch.equal(a.images, b.images[order])
            assert torch.allclose(a.boxes, b.boxes[order], atol=1e-4)


def test_boxes_round_trip_between_pixels_and_normalised_centre_form():
    xyxy = torch.tensor([[4.0, 8.0, 20.0, 16.0]])
    cxcywh = normalised_boxes(xyxy, (32, 64))  # H 32, W 64
    assert torch.allclose(cxcywh, torch.tensor([[12 / 64, 12 / 32, 16 / 64, 8 / 32]]))
    assert torch.allclose(pixel_boxes(cxcywh, (32, 64)), xyxy)


def test_iou_and_localisation_accuracy_on_hand_made_boxes():
    target = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5], [0.25, 0.25, 0.2, 0.2]])
    pred = torch.tensor([[0.5, 0.5, 0.25, 0.25], [0.5, 0.5, 0.5, 0.5], [0.75, 0.75, 0.2, 0.2]])
    logits = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    fig = localisation_figures(logits, pred, torch.tensor([1, 1, 1]), target)
    # a quarter-size box centred in the target: IoU = 0.25² / 0.5² = 0.25; same box: 1; disjoint boxes: 0
    assert torch.allclose(fig["iou"], torch.tensor([0.25, 1.0, 0.0]))
    assert fig["correct"].tolist() == [True, False, True]
    assert fig["hit"].tolist() == [False, False, False]  # IoU < 0.5, wrong class, no overlap


def test_localizer_outputs_logits_and_boxes_inside_the_image():
    backbone = create_model("smallcnn", num_classes=3, in_chans=3)
    backbone.default_input = (3, 40, 40)
    model = Localizer(backbone).eval()
    out = model(torch.randn(2, 3, 40, 40))
    assert out.logits.shape == (2, 3) and out.boxes.shape == (2, 4)
    assert bool(((out.boxes > 0) & (out.boxes < 1)).all())
    assert "box_head" in model.group_matcher()["head"]


def test_box_augmentation_moves_the_box_with_the_object():
    torch.manual_seed(0)
    x = torch.zeros(16, 3, 32, 32, dtype=torch.uint8)
    x[:, :, 8:16, 4:20] = 255  # a white object at x 4..20, y 8..16
    boxes = normalised_boxes(torch.tensor([[4.0, 8.0, 20.0, 16.0]]), (32, 32)).repeat(16, 1)
    aug_x, aug_b = BoxAugment((32, 32), hflip=True)(x, boxes)
    assert not torch.equal(aug_b, boxes)  # the boxes did move
    for img, box in zip(aug_x, pixel_boxes(aug_b, (32, 32))):
        ys, xs = torch.nonzero(img.float().mean(0) > 127, as_tuple=True)
        found = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
        assert torch.allclose(found, box, atol=1.5)


def test_one_object_per_image_is_required_or_skipped(tmp_path):
    found = synthesize("digits", size=32, objects_per_image=(2, 2), train=6, val=2, test=2, progress=False)
    data_yaml = write_scenes(tmp_path / "two", found, ("yolo",), progress=False)["yolo"]
    with pytest.raises(LabelError, match="exactly one labelled object") as e:
        load_box_data(build_config(sets=[f"data.name={data_yaml}"]).data)
    assert "000000.png" in str(e.value)
    cfg = build_config(sets=[f"data.name={data_yaml}", "data.skip_bad=true"]).data
    with pytest.raises(Exception, match="training images"):  # every image skipped: nothing left to train on
        load_box_data(cfg)


def test_localize_run_card_history_and_monitor(loc_run):
    card = json.loads((loc_run / "model.json").read_text())
    assert card["task"] == "localize" and card["model"] == "smallcnn" and card["input"]["height"] == 32
    header = (loc_run / "history.csv").read_text().splitlines()[0].split(",")
    assert {"train_mean_iou", "val_mean_iou", "val_loc_accuracy", "val_accuracy"} <= set(header)
    metrics = json.loads((loc_run / "metrics.json").read_text())
    assert metrics["monitor"] == "val_loc_accuracy" and "val_mean_iou" in metrics


def test_evaluate_json_predict_and_report(loc_run, scenes, cli, tmp_path):
    code, out, err = cli("evaluate", loc_run, "--split", "test", "--json", tmp_path / "m.json", "--predictions",
                         tmp_path / "p.csv", "--gallery", tmp_path / "g.png")  # fmt: skip
    assert code == 0, err
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["task"] == "localize" and m["n"] == 12 and 0 <= m["loc_accuracy"] <= m["accuracy"] <= 1
    assert "localisation accuracy" in out and len((tmp_path / "p.csv").read_text().splitlines()) == 13
    image = sorted((scenes["yolo"].parent / "images" / "test").glob("*.png"))[0]
    code, out, err = cli("predict", loc_run, image, "--json", "--out", tmp_path / "drawn")
    assert code == 0, err
    pred = json.loads(out)[0]
    x1, y1, x2, y2 = pred["box"]
    assert 0 <= x1 < x2 <= 32 and 0 <= y1 < y2 <= 32 and pred["label"] in [str(i) for i in range(10)]
    assert Image.open(tmp_path / "drawn" / f"{image.stem}_box.png").size == (32, 32)
    code, _, err = cli("report", loc_run)
    assert code == 0, err
    assert (loc_run / "report_files" / "iou_histogram.png").is_file() and "IoU" in (loc_run / "report.md").read_text()


def test_explain_a_localize_run_shows_the_box_head(loc_run, cli):
    code, out, err = cli("explain", loc_run)
    assert code == 0, err
    assert "box_head" in out


def test_mixup_is_refused_for_boxes(scenes, tmp_path):
    from cnnkit.errors import CnnkitError
    from cnnkit.tasks import train

    cfg = build_config(sets=["task.name=localize", f"data.name={scenes['yolo']}", "data.mixup=0.5",
                             f"train.out={tmp_path / 'r'}"])  # fmt: skip
    with pytest.raises(CnnkitError, match="mixup"):
        train(cfg, log=lambda *_: None, progress=False)


def test_task_is_read_from_the_run(loc_run):
    from cnnkit import load

    predictor = load(loc_run)
    assert type(predictor).__name__ == "BoxPredictor" and predictor.classes == [str(i) for i in range(10)]
    assert isinstance(Localize().monitors, dict)


def test_new_data_without_splits_is_evaluated_whole(loc_run, scenes, cli, tmp_path):
    """A flat folder of new scenes (LabelImg's layout: images, YOLO label files beside them, classes.txt) is scored
    whole, not carved into train/val/test as training would carve it."""
    root = scenes["yolo"].parent
    flat = tmp_path / "flat"
    flat.mkdir()
    names = yaml.safe_load(scenes["yolo"].read_text())["names"]
    (flat / "classes.txt").write_text("".join(f"{names[k]}\n" for k in range(len(names))))
    for image in sorted((root / "images" / "test").glob("*.png")):
        (flat / image.name).write_bytes(image.read_bytes())
        (flat / f"{image.stem}.txt").write_bytes((root / "labels" / "test" / f"{image.stem}.txt").read_bytes())
    code, out, err = cli("evaluate", loc_run, "--data", flat, "--json", tmp_path / "m.json")
    assert code == 0, err
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["n"] == 12 and m["split"] == "all" and out.startswith(f"every image in {flat}") and ": 12 images" in out
    assert cli("evaluate", loc_run, "--json", tmp_path / "own.json")[0] == 0  # the same 12 scenes: its test split
    own = json.loads((tmp_path / "own.json").read_text())
    assert own["split"] == "test" and (m["accuracy"], m["loc_accuracy"]) == (own["accuracy"], own["loc_accuracy"])
    assert json.loads((loc_run / "eval_all_flat.json").read_text())["n"] == 12 and (loc_run / "eval_test.json").exists()
    assert m["mean_iou"] == pytest.approx(own["mean_iou"], abs=1e-6)
    code, _, err = cli("evaluate", loc_run, "--data", flat, "--split", "val")
    assert code == 2 and "expected --split test" in err and "evaluated whole" in err
