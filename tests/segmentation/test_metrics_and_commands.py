"""COCO mask mAP: cnnkit's figures equal pycocotools' own COCOeval (segm and bbox) on the same predictions; and
the commands (train, evaluate, predict, report) on a Mask R-CNN run trained a few steps."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from cnnkit.segmentation.metrics import coco_segm_ground_truth, coco_segm_results, segmentation_map


def cocoeval_stats(gt_path: Path, results_path: Path, iou_type: str) -> list[float]:
    """mAP@[.5:.95], mAP@0.5, mAP@0.75 as pycocotools computes them from the two JSON files."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(gt_path))
    ev = COCOeval(gt, gt.loadRes(str(results_path)), iou_type)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return [float(v) for v in ev.stats[:3]]


def noisy_instances(seed: int = 0, size: int = 48) -> tuple[list[dict], list[dict]]:
    """20 images with 0-3 rectangular objects; predictions = the true masks shifted by 0-2 pixels with some
    pixels dropped, some with the wrong class, plus a false object each."""
    g = torch.Generator().manual_seed(seed)
    targets, preds = [], []
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    for _ in range(20):
        n = int(torch.randint(0, 4, (1,), generator=g))
        masks, boxes, pmasks, pboxes = [], [], [], []
        for _ in range(n + 1):
            x1, y1 = (int(v) for v in torch.randint(0, size - 16, (2,), generator=g))
            w, h = (int(v) for v in torch.randint(6, 16, (2,), generator=g))
            m = (xx >= x1) & (xx < x1 + w) & (yy >= y1) & (yy < y1 + h)
            dx, dy = (int(v) for v in torch.randint(0, 3, (2,), generator=g))
            p = torch.roll(m, (dy, dx), (0, 1)) & (torch.rand(size, size, generator=g) > 0.05)
            masks.append(m)
            boxes.append([x1, y1, x1 + w, y1 + h])
            pmasks.append(p.float() * 0.9)
            pboxes.append([x1 + dx, y1 + dy, x1 + w + dx, y1 + h + dy])
        labels = torch.randint(0, 3, (n + 1,), generator=g)
        flip = torch.rand(n + 1, generator=g) < 0.2
        true_masks = torch.stack(masks[:n]) if n else torch.zeros(0, size, size, dtype=torch.bool)
        targets.append({"boxes": torch.tensor(boxes[:n], dtype=torch.float32).reshape(-1, 4), "labels": labels[:n],
                        "masks": true_masks.to(torch.uint8)})  # fmt: skip
        preds.append({"boxes": torch.tensor(pboxes, dtype=torch.float32), "masks": torch.stack(pmasks),
                      "labels": torch.where(flip, (labels + 1) % 3, labels),
                      "scores": torch.rand(n + 1, generator=g)})  # fmt: skip
    return preds, targets


def test_mask_and_box_map_equal_pycocotools_cocoeval(tmp_path):
    preds, targets = noisy_instances()
    m = segmentation_map(preds, targets, 3)
    (tmp_path / "gt.json").write_text(json.dumps(coco_segm_ground_truth(targets, ["a", "b", "c"], (48, 48))))
    (tmp_path / "res.json").write_text(json.dumps(coco_segm_results(preds)))
    segm = cocoeval_stats(tmp_path / "gt.json", tmp_path / "res.json", "segm")
    bbox = cocoeval_stats(tmp_path / "gt.json", tmp_path / "res.json", "bbox")
    assert 0.05 < segm[0] < 0.9 and segm[0] != pytest.approx(bbox[0], abs=1e-3)  # neither trivial nor the boxes'
    assert [m["segm_map"], m["segm_map_50"], m["segm_map_75"]] == pytest.approx(segm, abs=1e-4)
    assert [m["bbox_map"], m["bbox_map_50"], m["bbox_map_75"]] == pytest.approx(bbox, abs=1e-4)


def test_mask_map_of_hand_made_masks():
    square = torch.zeros(1, 20, 20, dtype=torch.uint8)
    square[0, 0:10, 0:10] = 1
    target = [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([0]), "masks": square}]
    half = square.clone().float()
    half[0, 0:10, 6:10] = 0  # 60 of the 100 pixels: mask IoU 0.6; the box is exact
    pred = [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([0]), "scores": torch.tensor([0.9]),
             "masks": half}]  # fmt: skip
    m = segmentation_map(pred, target, 2)
    assert m["bbox_map"] == pytest.approx(1.0) and m["segm_map_50"] == pytest.approx(1.0)
    assert m["segm_map"] == pytest.approx(0.3)  # a hit at IoU 0.50, 0.55, 0.60 (3 of 10 thresholds)
    assert m["per_class"][0]["segm"] == pytest.approx(0.3) and math.isnan(m["per_class"][1]["segm"])


def test_a_segment_run_trains_finitely_and_records_its_model(seg_run):
    card = json.loads((seg_run / "model.json").read_text())
    assert card["task"] == "segment" and card["model"] == "maskrcnn_smallcnn"
    assert card["task_fields"]["segmenter"] == "maskrcnn" and card["preprocessing"]["mean"] == [0.0, 0.0, 0.0]
    rows = (seg_run / "history.csv").read_text().splitlines()
    head = rows[0].split(",")
    for col in ("train_loss", "train_mask", "val_loss"):
        assert all(math.isfinite(float(r.split(",")[head.index(col)])) for r in rows[1:])
    assert (seg_run / "report.html").exists() and (seg_run / "report_files" / "worst_images.png").exists()


def test_evaluate_prints_mask_ap_per_class_and_its_saved_predictions_rescore_the_same(seg_run, tmp_path, capsys):
    from cnnkit.cli import main

    res, out_json = tmp_path / "results.json", tmp_path / "metrics.json"
    assert main(["evaluate", str(seg_run), "--predictions", str(res), "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "mask mAP@0.5" in text and "mask AP@[.5:.95]" in text and "per class" in text
    m = json.loads(out_json.read_text())
    assert json.loads(res.read_text())  # every object of score ≥ 0.001: even a run of a few steps has some
    ref = cocoeval_stats(tmp_path / "results_ground_truth.json", res, "segm")
    assert [m["segm_map"], m["segm_map_50"], m["segm_map_75"]] == pytest.approx(ref, abs=1e-4)
    assert set(m["per_class"]["0"]) == {"objects", "mask_ap", "mask_ap50", "box_ap"}


def test_predict_prints_objects_and_writes_the_image(seg_run, seg_scenes, tmp_path, capsys):
    from cnnkit.cli import main

    image = sorted((seg_scenes / "images" / "test").glob("*.png"))[0]
    assert main(["predict", str(seg_run), str(image), "--json", "--out", str(tmp_path)]) == 0
    (found,) = json.loads(capsys.readouterr().out)
    assert found["image"] == str(image) and isinstance(found["objects"], list)
    from PIL import Image

    assert Image.open(tmp_path / f"{image.stem}_masks.png").size == (240, 240)  # 48 px enlarged ×5


def test_overlay_fills_each_mask_in_its_own_colour():
    from cnnkit.tasks.segment_eval import PALETTE, overlay

    image = torch.zeros(3, 40, 40, dtype=torch.uint8)
    masks = torch.zeros(2, 40, 40, dtype=torch.bool)
    masks[0, 20:30, 2:12], masks[1, 20:30, 25:35] = True, True
    out = overlay(image, masks, torch.tensor([[2.0, 20, 12, 30], [25, 20, 35, 30]]), ["a", "b"])
    for k, (y, x) in enumerate([(25, 7), (25, 30)]):
        rgb = [int(PALETTE[k][i : i + 2], 16) for i in (1, 3, 5)]
        assert out[:, y, x].tolist() == pytest.approx([v / 2 for v in rgb], abs=1)  # alpha 0.5 over black
    assert out[:, 5, 20].tolist() == [0, 0, 0]  # outside every mask and label: untouched


def test_the_validation_loss_is_repeatable_and_leaves_the_training_random_stream_alone():
    from cnnkit.segmentation.model import build_segmenter

    torch.manual_seed(0)
    model = build_segmenter("maskrcnn_smallcnn", 2, (32, 32)).train()
    x = torch.rand(2, 3, 32, 32)
    masks = torch.zeros(1, 32, 32, dtype=torch.uint8)
    masks[0, 4:20, 6:18] = 1
    targets = [{"boxes": torch.tensor([[6.0, 4, 18, 20]]), "labels": torch.tensor([1]), "masks": masks}] * 2
    state = torch.get_rng_state()
    (preds, first), (_, second) = model.evaluate_batch(x, targets), model.evaluate_batch(x, targets)
    assert torch.equal(torch.get_rng_state(), state) and model.training
    assert math.isfinite(float(first)) and float(first) == float(second)
    assert set(preds[0]) == {"boxes", "scores", "labels", "masks"} and preds[0]["masks"].shape[1:] == (32, 32)


def test_another_zoo_backbone_trains_and_a_wrong_name_is_one_clear_line():
    from cnnkit.errors import CnnkitError
    from cnnkit.segmentation.model import build_segmenter

    model = build_segmenter("maskrcnn_efficientnet_lite0", 2, (64, 64)).train()
    masks = torch.zeros(1, 64, 64, dtype=torch.uint8)
    masks[0, 8:40, 10:30] = 1
    targets = [{"boxes": torch.tensor([[10.0, 8, 30, 40]]), "labels": torch.tensor([0]), "masks": masks}] * 2
    losses = model(torch.rand(2, 3, 64, 64), targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    assert all(math.isfinite(float(v)) for v in losses.values())
    with pytest.raises(CnnkitError, match=r"maskrcnn_<backbone>.*found 'yolo_smallcnn'") as e:
        build_segmenter("yolo_smallcnn", 2, (64, 64))
    assert "\n" not in str(e.value)


def test_explain_traces_the_backbone_and_the_class_score_figures_refuse_in_one_line(seg_run, seg_scenes, cli, tmp_path):
    code, out, err = cli("explain", seg_run)
    assert code == 0, err
    assert out.startswith("explaining net.backbone (images -> the feature map") and "not traced" in out
    assert "net.backbone: input 48×48×3" in out and "output 12×12×128" in out  # smallcnn's map: stride 4
    code, out, err = cli("explain", seg_run, "--json")
    assert code == 0 and json.loads(out)["explained"] == "net.backbone" and json.loads(out)["output"] == [128, 12, 12]
    image = sorted((seg_scenes / "images").rglob("*.png"))[0]
    refused = (("visualize", seg_run, image, "--out", tmp_path / "vis"), ("visualize-units", seg_run, "--layer", "x"))
    for args in refused:
        code, out, err = cli(*args)
        assert code == 2 and not out and len(err.strip().splitlines()) == 1, err
        assert "expected a classify run" in err and "found a segment run" in err and "cnnkit explain" in err


def test_the_run_card_names_the_heads_and_a_run_saved_before_it_did_loads_with_its_own(seg_run, tmp_path):
    import shutil

    from safetensors.torch import save_file

    from cnnkit.segmentation.model import build_segmenter
    from cnnkit.tasks.segment_eval import SegmentPredictor

    fields = json.loads((seg_run / "model.json").read_text())["task_fields"]
    assert fields["mask_head"] == [64, 64] and fields["roi_sampling"] == 1
    net = SegmentPredictor.from_run(seg_run).model.net
    assert net.roi_heads.mask_roi_pool.sampling_ratio == 1 and len(net.roi_heads.mask_head) == 2
    # a run written by the first version: four 128-channel mask convolutions, sampling ratio 2, none of it in the card
    old = tmp_path / "old"
    shutil.copytree(seg_run, old)
    card = json.loads((old / "model.json").read_text())
    del card["task_fields"]["mask_head"], card["task_fields"]["roi_sampling"]
    (old / "model.json").write_text(json.dumps(card))
    torch.manual_seed(1)
    legacy = build_segmenter("maskrcnn_smallcnn", card["num_classes"], (48, 48), mask_head=(128,) * 4, roi_sampling=2)
    save_file({k: v.contiguous() for k, v in legacy.state_dict().items()}, old / "model.safetensors")
    loaded = SegmentPredictor.from_run(old).model
    net = loaded.net
    assert net.roi_heads.box_roi_pool.sampling_ratio == 2 and net.roi_heads.mask_roi_pool.sampling_ratio == 2
    assert [m[0].out_channels for m in net.roi_heads.mask_head] == [128] * 4
    torch.testing.assert_close(loaded.state_dict(), legacy.state_dict(), rtol=0, atol=0)
