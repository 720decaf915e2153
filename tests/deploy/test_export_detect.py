"""ONNX export of detection runs with their decoding and NMS (YOLO, torchvision's FCOS) and of segmentation runs
with their masks (Mask R-CNN): ONNX Runtime finds the objects PyTorch finds, through the Python API and ``cnnkit
predict``, and the export check says clearly when it does not."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnkit.deploy import load_onnx, load_predictor
from cnnkit.detection.export import compare_detections
from cnnkit.engine.checkpoint import save_weights
from cnnkit.errors import CnnkitError
from tests.detection.conftest import det_scenes, yolo_run  # noqa: F401 - shared fixtures
from tests.segmentation.conftest import seg_run, seg_scenes  # noqa: F401

BOX_ATOL = 1e-4  # pixels, after matching each detection to its counterpart
SCORE_ATOL = 1e-5
MASK_ATOL = 1e-4  # mask probabilities


@pytest.fixture(scope="module")
def fcos_run(det_scenes, tmp_path_factory) -> Path:  # noqa: F811
    """torchvision's FCOS on smallcnn, one epoch on the 32×32 scenes (no report)."""
    from cnnkit.cli import main

    out = tmp_path_factory.mktemp("det_runs") / "fcos"
    args = ["train", "--task", "detect", "--data", str(det_scenes["yolo"]), "--model", "fcos_smallcnn", "--set",
            "model.pretrained=false", "--set", "train.report=false", "--epochs", "1", "--batch-size", "8", "--lr",
            "0.0001", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(args) == 0
    return out


def sure_of_itself(run: Path, dest: Path, images: list[Path]) -> Path:
    """A copy of ``run`` whose detector finds objects at the default score threshold (0.25), with scores that vary
    from image to image and box to box: a barely trained one finds none (two empty lists prove nothing) and its
    class scores hardly depend on the image (near-ties that float noise may order either way). Its final layer's
    class (and YOLO's objectness) outputs are rescaled, on ``images``, to a spread of 3 around a chosen centre;
    everything before them is the run's own."""
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("model.onnx"))
    pred = load_predictor(dest)
    model = pred.model
    if model.kind == "yolo":  # per anchor: t_x, t_y, t_w, t_h, t_o, classes
        layer, centre = model.head, -3.0
        rows = torch.arange(layer.out_channels).view(model.num_anchors, -1)[:, 4:].reshape(-1)
    else:
        layer, centre = model.detector.head.classification_head.cls_logits, -7.0
        rows = torch.arange(layer.out_channels)
    seen: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda m, a, out: seen.append(out.transpose(0, 1).flatten(1)))
    pred.detect(images)
    hook.remove()
    out = torch.cat(seen, 1)[rows]  # [rows, samples]
    scale = 3.0 / out.std(1)
    with torch.no_grad():
        layer.weight[rows] *= scale.view(-1, *[1] * (layer.weight.ndim - 1))
        layer.bias[rows] = (layer.bias[rows] - out.mean(1)) * scale + centre
    save_weights(model, dest / "model.safetensors")
    return dest


def scene_images(det_scenes, n: int = 8) -> list[Path]:  # noqa: F811
    root = det_scenes["yolo"] if det_scenes["yolo"].is_dir() else det_scenes["yolo"].parent
    images = sorted((root / "images").rglob("*.png"))[:n]
    assert len(images) == n
    return images


def assert_same_detections(want: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> None:
    """Each of PyTorch's detections has one ONNX Runtime counterpart: the same class, its box within BOX_ATOL pixels,
    its score within SCORE_ATOL (its mask, if any, within MASK_ATOL); and there are no others."""
    assert len(got["scores"]) == len(want["scores"])
    used = set()
    for i, (box, score, label) in enumerate(zip(want["boxes"], want["scores"], want["labels"])):
        far = (got["boxes"] - box).abs().amax(1) + 1e9 * (got["labels"] != label)
        j = int(far.argmin())
        assert float(far[j]) <= BOX_ATOL and abs(float(got["scores"][j] - score)) <= SCORE_ATOL
        if "masks" in want:
            assert float((got["masks"][j] - want["masks"][i]).abs().max()) <= MASK_ATOL
        used.add(j)
    assert len(used) == len(want["scores"])


@pytest.mark.parametrize("kind", ["yolo", "fcos"])
def test_detector_exports_with_its_nms_and_finds_pytorchs_detections(kind, request, det_scenes, dcli, tmp_path):  # noqa: F811
    images = scene_images(det_scenes)
    run = sure_of_itself(request.getfixturevalue(f"{kind}_run"), tmp_path / "run", images)
    code, text, err = dcli("export", run)
    assert code == 0, err
    assert "torchscript exporter" in text and ("input batch×3×32×32" if kind == "yolo" else "input 1×3×32×32") in text
    diff = float(text.split("max difference ")[1].split()[0])
    compared = int(text.split(" over ")[1].split()[0])
    assert diff < 1e-4 and compared > 0, text  # over real detections, each matched to its counterpart
    eager, ort = load_predictor(run), load_onnx(run / "model.onnx")
    for conf in (0.05, 0.25):  # the file keeps every score above 0.001; the threshold is applied after, as in PyTorch
        want, got = eager.detect(images, conf), ort.detect(images, conf)  # 8 images: not the batch it was exported with
        for w, g in zip(want, got):
            assert_same_detections(w, g)
        assert sum(len(w["scores"]) for w in want) > 0
    # cnnkit predict: the run on ONNX Runtime (its model.onnx, not exported again) and the .onnx alone
    _, eager_json, _ = dcli("predict", run, *images, "--json")
    code, ort_json, err = dcli("predict", run, *images, "--json", "--backend", "onnxruntime")
    assert code == 0 and "max difference" not in err, err
    _, file_json, _ = dcli("predict", run / "model.onnx", *images, "--json")
    for a, b, c in zip(json.loads(eager_json), json.loads(ort_json), json.loads(file_json)):
        assert (
            [o["label"] for o in a["objects"]]
            == [o["label"] for o in b["objects"]]
            == [o["label"] for o in c["objects"]]
        )
        for key, atol in (("box", 0.05 + BOX_ATOL), ("score", SCORE_ATOL)):  # boxes are printed to 0.1 pixel
            assert np.allclose([o[key] for o in a["objects"]], [o[key] for o in b["objects"]], atol=atol)
            assert np.allclose([o[key] for o in b["objects"]], [o[key] for o in c["objects"]], atol=1e-7)
    assert any(a["objects"] for a in json.loads(eager_json))


def test_a_mask_rcnn_run_exports_with_its_masks(seg_run, seg_scenes, dcli, tmp_path):  # noqa: F811
    run = shutil.copytree(seg_run, tmp_path / "run", ignore=shutil.ignore_patterns("model.onnx"))  # not the shared one
    code, text, err = dcli("export", run)
    assert code == 0, err
    assert "torchscript exporter" in text and "input 1×3×48×48" in text and "(boxes in pixels, scores, masks;" in text
    diff = float(text.split("max difference ")[1].split()[0])
    assert diff < 1e-4 and int(text.split(" over ")[1].split()[0]) > 0, text
    images = sorted((seg_scenes / "images").rglob("*.png"))[:4]
    eager, ort = load_predictor(run), load_onnx(run / "model.onnx")
    want, got = eager.segment(images, 0.01), ort.segment(images, 0.01)  # a one-epoch Mask R-CNN scores low
    assert sum(len(w["scores"]) for w in want) > 0
    for w, g in zip(want, got):
        assert_same_detections(w, g)
    _, eager_json, _ = dcli("predict", run, *images, "--json")
    code, ort_json, err = dcli("predict", run / "model.onnx", *images, "--json")
    assert code == 0, err
    for a, b in zip(json.loads(eager_json), json.loads(ort_json)):
        assert [(o["label"], o["area"]) for o in a["objects"]] == [(o["label"], o["area"]) for o in b["objects"]]
        assert np.allclose([o["box"] for o in a["objects"]], [o["box"] for o in b["objects"]], atol=0.05 + BOX_ATOL)


def flat(boxes: list[list[float]], scores: list[float], labels: list[int], counts: list[int]) -> list[torch.Tensor]:
    return [torch.tensor(boxes).reshape(-1, 4), torch.tensor(scores), torch.tensor(labels), torch.tensor(counts)]


def test_detections_that_differ_in_number_are_said_in_one_line():
    want = flat([[0, 0, 10, 10], [20, 20, 30, 30], [1, 1, 5, 5]], [0.9, 0.8, 0.5], [0, 1, 1], [2, 1])
    diff, note = compare_detections(want, want)
    assert diff == 0 and note.startswith("over 3 detections")
    fewer = flat([[0, 0, 10, 10], [1, 1, 5, 5]], [0.9, 0.5], [0, 1], [1, 1])
    with pytest.raises(
        CnnkitError, match=r"PyTorch's 2 detections on check image 1, found 1 \(.*class 1 score 0\.8000"
    ):
        compare_detections(fewer, want)
    moved = flat([[0, 0, 10, 10], [25, 20, 35, 30], [1, 1, 5, 5]], [0.9, 0.8, 0.5], [0, 1, 1], [2, 1])
    with pytest.raises(CnnkitError, match="found as many but 1 of them different"):
        compare_detections(moved, want)
    # detections left over where float noise decides are borderline, not errors: a score at the threshold…
    at_conf = flat([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.001 + 1e-7], [0, 1], [2])
    assert "1 borderline" in compare_detections(flat([[0, 0, 10, 10]], [0.9], [0], [1]), at_conf)[1]
    # …or at the end of a full list (the cap of detections per image): tied scores, one kept in each
    full = flat([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.4], [0, 1], [2])
    cut = flat([[0, 0, 10, 10], [20, 0, 30, 10]], [0.9, 0.4], [0, 0], [2])
    assert "2 borderline" in compare_detections(cut, full, cap=2)[1]
    with pytest.raises(CnnkitError, match="found as many but 1 of them different"):
        compare_detections(cut, full)
    assert "nothing compared" in compare_detections(flat([], [], [], [0]), flat([], [], [], [0]))[1]
