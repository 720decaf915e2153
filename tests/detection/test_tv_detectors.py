"""torchvision's detectors on a zoo backbone: built by name, cnnkit's normalisation only (theirs is the identity, no
resizing), cnnkit's labels 0…C−1 in and out, finite losses on images without objects, backbones cut at a stage
(the same map as running the stages by hand), and a few steps of training and evaluation of each kind."""

from __future__ import annotations

import json
import math

import pytest
import torch

from cnnkit.detection.build import build_detector
from cnnkit.detection.yolo import Tapped, tap_name
from cnnkit.models import create_model

KINDS = ("fasterrcnn", "retinanet", "fcos", "ssdlite")
ANCHORS = torch.tensor([[8.0, 12.0], [14.0, 20.0]])


def targets(n_boxes: list[int]) -> list[dict[str, torch.Tensor]]:
    out = []
    for i, n in enumerate(n_boxes):
        xy = torch.tensor([[4.0 + 8 * j, 6.0 + 5 * i] for j in range(n)]).reshape(-1, 2)
        out.append({"boxes": torch.cat([xy, xy + torch.tensor([14.0, 20.0])], 1), "labels": torch.arange(n) % 3})
    return out


def test_a_backbone_cut_at_a_stage_gives_the_map_of_running_its_stages_by_hand():
    net = create_model("resnet18", num_classes=3).eval()
    net.default_input = (3, 64, 64)
    assert tap_name(net, 8) == "layer2" and tap_name(net, 32) is None  # stride 8 after layer2; 32 is the whole map
    x = torch.randn(2, 3, 64, 64)
    by_hand = net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x))))))
    assert torch.allclose(Tapped(net, "layer2")(x), by_hand)
    assert tap_name(create_model("smallcnn", num_classes=3), 8) is None  # stride 4: nothing to cut


@pytest.mark.parametrize("kind", KINDS)
def test_the_detector_neither_normalises_again_nor_resizes(kind):
    model = build_detector(f"{kind}_efficientnet_lite0", 3, (64, 64), anchors=ANCHORS).eval()
    x = torch.randn(2, 3, 64, 64)
    batch, _ = model.detector.transform(list(x))
    assert batch.tensors.shape[-2:] == (64, 64) and torch.allclose(batch.tensors, x)
    assert model.stride == 16 and model.tap == "_blocks.10"  # Lite0's stride-16 stage: 16 blocks, 11 before stride 32


@pytest.mark.parametrize("kind", KINDS)
def test_images_without_objects_train_with_finite_losses_and_labels_come_back_as_cnnkits(kind):
    torch.manual_seed(0)
    model = build_detector(f"{kind}_efficientnet_lite0", 3, (64, 64), anchors=ANCHORS).train()
    x = torch.randn(3, 3, 64, 64)
    loss, parts = model.loss_of(model(x, targets([0, 2, 0])), targets([0, 2, 0]))
    loss.backward()
    assert math.isfinite(loss.item()) and "box" in parts
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    negatives = model.loss_of(model(x[:2], targets([0, 0])), targets([0, 0]))[0]
    assert math.isfinite(float(negatives))
    found, val_loss = model.evaluate_batch(x, targets([0, 2, 0]), conf=0.0)
    assert model.training and math.isfinite(float(val_loss))  # back in training mode after evaluating
    labels = torch.cat([p["labels"] for p in found])
    assert len(labels) and int(labels.min()) >= 0 and int(labels.max()) < 3


def test_every_parameter_belongs_to_a_group_the_heads_to_head():
    model = build_detector("fasterrcnn_efficientnet_lite0", 3, (64, 64), anchors=ANCHORS)
    groups = model.group_matcher()
    prefixes = [p for ps in groups.values() for p in ps]
    for name, _ in model.named_parameters():
        assert any(name == p or name.startswith(p + ".") for p in prefixes), name
    assert {"detector.rpn", "detector.roi_heads"} <= set(groups["head"])


@pytest.mark.parametrize("kind", KINDS)
def test_a_few_steps_of_training_then_evaluate(kind, det_scenes, tmp_path, capsys):
    from cnnkit.cli import main

    run = tmp_path / kind
    args = ["train", "--task", "detect", "--data", str(det_scenes["yolo"]), "--model", f"{kind}_efficientnet_lite0",
            "--set", "model.pretrained=false", "--set", "data.image_size=64", "--set", "train.report=false",
            "--epochs", "1", "--batch-size", "8", "--lr", "0.0001", "--out", str(run), "--quiet"]  # fmt: skip
    assert main(args) == 0
    card = json.loads((run / "model.json").read_text())
    assert card["task_fields"]["detector"] == kind and card["task_fields"]["stride"] == 16
    history = (run / "history.csv").read_text().splitlines()
    row = dict(zip(history[0].split(","), history[1].split(",")))
    assert math.isfinite(float(row["train_loss"])) and math.isfinite(float(row["val_loss"]))  # 0–3 objects, negatives
    assert main(["evaluate", str(run), "--json", str(tmp_path / "m.json")]) == 0
    m = json.loads((tmp_path / "m.json").read_text())
    assert 0 <= m["map_50"] <= 1 and m["n"] == 8


@pytest.mark.parametrize("kind", KINDS)
def test_explain_traces_the_backbone_of_each_kind(kind):
    from cnnkit.explain.summary import summarize
    from cnnkit.explain.targets import explained_part

    with torch.device("meta"):  # as `cnnkit explain RUN` builds it: no weights allocated
        model = build_detector(f"{kind}_smallcnn", 3, (32, 32), anchors=ANCHORS)
    net, name, note = explained_part(model)
    assert name == "detector.backbone" and net is model.detector.backbone and "not traced" in note
    s = summarize(net, (3, 32, 32))
    assert s.rows[-1].name == "lateral.2" and s.output == (128, 8, 8)  # the 1×1 lateral layer, stride 4
