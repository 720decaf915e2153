"""COCO mAP: cnnkit's figures equal pycocotools' own COCOeval on the same saved predictions; and the commands
(train, evaluate, predict, report, explain) on a YOLO run trained a few steps."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from cnnkit.detection.metrics import coco_ground_truth, coco_results, mean_average_precision, results_to_preds


def cocoeval_stats(gt_path: Path, results_path: Path) -> list[float]:
    """mAP@[.5:.95], mAP@0.5, mAP@0.75 as pycocotools computes them from the two JSON files."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(gt_path))
    ev = COCOeval(gt, gt.loadRes(str(results_path)), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return [float(v) for v in ev.stats[:3]]


def noisy_detections(seed: int = 0) -> tuple[list[dict], list[dict]]:
    """30 images with 0-4 true boxes; detections = true boxes jittered, some with the wrong class, plus clutter."""
    g = torch.Generator().manual_seed(seed)
    targets, preds = [], []
    for _ in range(30):
        n = int(torch.randint(0, 5, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * 80
        boxes = torch.cat([xy, xy + 8 + torch.rand(n, 2, generator=g) * 30], 1)
        labels = torch.randint(0, 3, (n,), generator=g)
        targets.append({"boxes": boxes, "labels": labels})
        jitter = boxes + torch.randn(n, 4, generator=g) * 1.5
        flip = torch.rand(n, generator=g) < 0.2
        clutter = torch.rand(2, 2, generator=g) * 90
        preds.append({"boxes": torch.cat([jitter, torch.cat([clutter, clutter + 10], 1)]),
                      "labels": torch.cat([torch.where(flip, (labels + 1) % 3, labels), torch.tensor([0, 2])]),
                      "scores": torch.rand(n + 2, generator=g)})  # fmt: skip
    return preds, targets


def test_map_equals_pycocotools_cocoeval_on_the_saved_predictions(tmp_path):
    preds, targets = noisy_detections()
    m = mean_average_precision(preds, targets, 3)
    (tmp_path / "gt.json").write_text(json.dumps(coco_ground_truth(targets, ["a", "b", "c"], (128, 128))))
    (tmp_path / "res.json").write_text(json.dumps(coco_results(preds)))
    ref = cocoeval_stats(tmp_path / "gt.json", tmp_path / "res.json")
    assert 0.2 < ref[0] < 0.9  # neither trivial nor perfect
    assert [m["map"], m["map_50"], m["map_75"]] == pytest.approx(ref, abs=1e-4)


def test_map_of_hand_made_detections():
    target = [{"boxes": torch.tensor([[10.0, 10, 30, 30], [50, 50, 70, 80]]), "labels": torch.tensor([0, 1])}]
    pred = [{"boxes": torch.tensor([[10.0, 10, 30, 30], [50, 50, 70, 70]]), "labels": torch.tensor([0, 1]),
             "scores": torch.tensor([0.9, 0.8])}]  # fmt: skip
    m = mean_average_precision(pred, target, 3)
    # class 0 exact (AP 1 at every IoU); class 1 has IoU 400/600 = 0.667: a hit at 0.50-0.65 (4 of 10 thresholds)
    assert m["per_class"][0] == pytest.approx(1.0) and m["per_class"][1] == pytest.approx(0.4)
    assert math.isnan(m["per_class"][2])  # no true box of class 2
    assert m["map"] == pytest.approx(0.7) and m["map_50"] == pytest.approx(1.0) and m["map_75"] == pytest.approx(0.5)


def test_coco_results_round_trip():
    preds, _ = noisy_detections(1)
    back = results_to_preds(coco_results(preds), len(preds))
    for a, b in zip(preds, back):
        assert torch.allclose(a["boxes"], b["boxes"], atol=1e-3) and torch.equal(a["labels"], b["labels"])


def test_a_yolo_run_trains_on_scenes_with_negatives_and_records_its_anchors(yolo_run):
    card = json.loads((yolo_run / "model.json").read_text())
    fields = card["task_fields"]
    assert card["task"] == "detect" and card["model"] == "yolo_smallcnn" and fields["detector"] == "yolo"
    assert len(fields["anchors"]) == 5 and 0 < fields["anchor_mean_iou"] <= 1
    history = (yolo_run / "history.csv").read_text().splitlines()
    loss_col = history[0].split(",").index("train_loss")
    assert all(math.isfinite(float(r.split(",")[loss_col])) for r in history[1:])
    assert (yolo_run / "report.html").exists() and (yolo_run / "report_files" / "pr_curves.png").exists()


def test_evaluate_prints_map_per_class_and_its_saved_predictions_rescore_the_same(yolo_run, tmp_path, capsys):
    from cnnkit.cli import main

    res, out_json = tmp_path / "results.json", tmp_path / "metrics.json"
    assert main(["evaluate", str(yolo_run), "--predictions", str(res), "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "mAP@[.5:.95]" in text and "AP@0.5" in text and "per class" in text
    m = json.loads(out_json.read_text())
    ref = cocoeval_stats(tmp_path / "results_ground_truth.json", res)
    assert [m["map"], m["map_50"], m["map_75"]] == pytest.approx(ref, abs=1e-4)


def test_predict_prints_boxes_and_draws_them(yolo_run, det_scenes, tmp_path, capsys):
    from cnnkit.cli import main

    image = sorted((det_scenes["yolo"].parent / "images" / "test").glob("*.png"))[0]
    assert main(["predict", str(yolo_run), str(image), "--json", "--out", str(tmp_path)]) == 0
    (found,) = json.loads(capsys.readouterr().out)
    assert found["image"] == str(image) and isinstance(found["objects"], list)
    for o in found["objects"]:
        assert set(o) == {"label", "index", "score", "box"} and o["score"] >= 0.25
    assert (tmp_path / f"{image.stem}_boxes.png").exists()


def test_explain_of_a_yolo_run_shows_the_output_grid(yolo_run, capsys):
    from cnnkit.cli import main

    assert main(["explain", str(yolo_run)]) == 0
    assert "output 4×4×75" in capsys.readouterr().out  # 32×32 input, stride 8, 5 anchors × (5 + 10 classes)
