"""YOLO on hand-made numbers: k-means anchors, the assignment of true boxes, the loss, decoding and NMS."""

from __future__ import annotations

import math

import pytest
import torch

from cnnkit.detection.anchors import kmeans_anchors, wh_iou
from cnnkit.detection.build import build_detector, parse_name
from cnnkit.detection.yolo import assign, decode, detect, yolo_loss
from cnnkit.errors import CnnkitError

ANCHORS = torch.tensor([[8.0, 8.0], [24.0, 12.0]])
STRIDE, S, C = 8, 4, 3  # a 32×32 image: 4×4 cells of 8 px, 2 anchors, 3 classes


def raw(entries: list[tuple[int, int, int, list[float]]], background: float = -12.0) -> torch.Tensor:
    """A raw output Tensor[1, B·(5+C), S, S]: every objectness at ``background`` except the given
    (row, column, anchor, [t_x, t_y, t_w, t_h, t_o, class logits…]) entries."""
    p = torch.zeros(1, len(ANCHORS), 5 + C, S, S)
    p[:, :, 4] = background
    for r, c, a, values in entries:
        p[0, a, :, r, c] = torch.tensor(values)
    return p.reshape(1, -1, S, S)


def test_wh_iou_of_centred_sizes():
    # 10×10 against 20×10: intersection 100, union 200
    assert torch.allclose(wh_iou(torch.tensor([[10.0, 10.0]]), torch.tensor([[20.0, 10.0], [10.0, 10.0]])),
                          torch.tensor([[0.5, 1.0]]))  # fmt: skip


def test_kmeans_finds_the_two_box_shapes_of_two_clusters():
    wh = torch.cat([torch.tensor([[10.0, 10.0]]).repeat(30, 1), torch.tensor([[30.0, 15.0]]).repeat(20, 1)])
    anchors, mean_iou = kmeans_anchors(wh, k=2, seed=1)
    assert torch.equal(anchors, torch.tensor([[10.0, 10.0], [30.0, 15.0]]))  # sorted by area
    assert mean_iou == pytest.approx(1.0)
    one, iou_one = kmeans_anchors(wh, k=5)  # only two distinct sizes: two anchors
    assert len(one) == 2 and iou_one == pytest.approx(1.0)
    with pytest.raises(CnnkitError, match="training boxes"):
        kmeans_anchors(torch.zeros(0, 2))


def test_a_true_box_is_given_to_the_cell_of_its_centre_and_the_anchor_of_best_shape():
    target = [{"boxes": torch.tensor([[10.0, 17.0, 34.0, 29.0], [0.0, 0.0, 6.0, 6.0]]), "labels": torch.tensor([2, 0])}]
    image, row, col, anchor, _, labels = assign(target, ANCHORS, (S, S), STRIDE)
    # centre (22, 23) -> row 2, column 2; 24×12 is anchor 1. Centre (3, 3) -> cell (0, 0); 6×6 is anchor 0
    assert (image.tolist(), row.tolist(), col.tolist(), anchor.tolist()) == ([0, 0], [2, 0], [2, 0], [1, 0])
    assert labels.tolist() == [2, 0]


def test_decode_places_the_box_in_its_cell_scaled_from_its_anchor():
    out = raw([(2, 1, 1, [0.0, 0.0, math.log(0.5), math.log(2.0), 5.0, 0, 0, 0])])
    d = decode(out, ANCHORS, STRIDE)
    # centre ((0.5 + 1)·8, (0.5 + 2)·8) = (12, 20); size (24·0.5, 12·2) = (12, 24)
    assert torch.allclose(d.boxes[0, 2, 1, 1], torch.tensor([6.0, 8.0, 18.0, 32.0]))


def test_loss_is_near_zero_for_a_perfect_prediction_and_grows_with_each_error():
    target = [{"boxes": torch.tensor([[6.0, 8.0, 18.0, 32.0]]), "labels": torch.tensor([1])}]
    perfect = [0.0, 0.0, math.log(0.5), math.log(2.0), 12.0, -10.0, 10.0, -10.0]
    _, parts = yolo_loss(raw([(2, 1, 1, perfect)]), target, ANCHORS, STRIDE)
    assert float(parts["box"]) == pytest.approx(0.0, abs=1e-5)  # GIoU loss of identical boxes
    assert float(parts["class"]) < 1e-6 and float(parts["objectness"]) < 1e-3
    wrong_class = [*perfect[:5], 10.0, -10.0, -10.0]
    assert float(yolo_loss(raw([(2, 1, 1, wrong_class)]), target, ANCHORS, STRIDE)[1]["class"]) > 10
    shifted = [3.0, *perfect[1:]]  # centre moved right within the cell: a worse box
    assert float(yolo_loss(raw([(2, 1, 1, shifted)]), target, ANCHORS, STRIDE)[1]["box"]) > 0.1
    missed = [*perfect[:4], -12.0, *perfect[5:]]  # the responsible anchor says "no object"
    assert float(yolo_loss(raw([(2, 1, 1, missed)]), target, ANCHORS, STRIDE)[1]["objectness"]) > 10


def test_an_image_without_objects_has_a_finite_loss_of_objectness_only():
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    out = raw([], background=0.0).requires_grad_()
    loss, parts = yolo_loss(out, empty, ANCHORS, STRIDE)
    loss.backward()
    # every one of the 4·4·2 anchors pays BCE(σ(0), 0) = ln 2
    assert float(parts["objectness"]) == pytest.approx(S * S * 2 * math.log(2), rel=1e-5)
    assert float(parts["class"]) == 0 and float(parts["box"]) == 0 and torch.isfinite(out.grad).all()


def test_detect_thresholds_scores_and_suppresses_overlapping_boxes_of_a_class():
    box = [0.0, 0.0, math.log(0.5), math.log(2.0)]
    out = raw([
        (2, 1, 1, [*box, 8.0, 0, 9, 0]),  # class 1, score ≈ 1: kept
        (2, 1, 0, [0.0, 0.0, math.log(1.5), math.log(3.0), 2.0, 0, 9, 0]),  # 12×24 again, class 1, lower: NMS
        (0, 3, 0, [0.0, 0.0, 0.0, 0.0, 4.0, 9, 0, 0]),  # class 0 elsewhere, σ(4) ≈ 0.98: kept
        (3, 3, 0, [0.0, 0.0, 0.0, 0.0, -3.0, 0, 0, 9]),  # σ(−3) ≈ 0.047 < 0.25: dropped
    ])  # fmt: skip
    (found,) = detect(out, ANCHORS, STRIDE, (32, 32), conf=0.25)
    assert found["labels"].tolist() == [1, 0]
    assert torch.allclose(found["boxes"], torch.tensor([[6.0, 8.0, 18.0, 32.0], [24.0, 0.0, 32.0, 8.0]]), atol=1e-4)
    assert bool((found["scores"][:-1] >= found["scores"][1:]).all())


def test_detector_names_and_the_output_shape_s_s_b_5_plus_c():
    assert parse_name("yolo_smallcnn") == ("yolo", "smallcnn")
    assert parse_name("fasterrcnn_efficientnet_lite0") == ("fasterrcnn", "efficientnet_lite0")
    for bad in ("yolo_nosuchnet", "detr_resnet18", "smallcnn"):
        with pytest.raises(CnnkitError, match="<kind>_<backbone>"):
            parse_name(bad)
    model = build_detector("yolo_smallcnn", 3, (64, 64), anchors=ANCHORS).eval()
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 2 * (5 + 3), 8, 8)
    assert model.grid == (8, 8) and model.stride == 8
    assert "output 8×8×2·(5+3) = 8×8×16" in model.describe()
    assert {"neck", "head"} <= set(model.group_matcher()["head"])


def test_a_backbone_coarser_than_8_px_is_cut_at_its_stride_8_stage():
    model = build_detector("yolo_efficientnet_lite0", 3, (128, 128), anchors=ANCHORS).eval()
    assert model.stride == 8 and model.grid == (16, 16) and model.tap is not None  # Lite0 ends at stride 32
    assert model(torch.zeros(1, 3, 128, 128)).shape == (1, 2 * (5 + 3), 16, 16)
    assert f"backbone cut after {model.tap}" in model.describe()


def test_the_detect_default_starts_from_imagenet_weights_and_says_so_for_a_backbone_without_them(det_scenes):
    from cnnkit.config import build_config
    from cnnkit.tasks.detect import Detect

    cfg = build_config(sets=[f"data.name={det_scenes['yolo']}"], task__name="detect")
    assert cfg.model.name == "yolo_efficientnet_lite0" and cfg.model.pretrained
    cfg.model.name = "yolo_smallcnn"
    task = Detect()
    with pytest.raises(CnnkitError, match="model.pretrained=false"):
        task.build_model(cfg, task.load_data(cfg))
