"""ONNX export of classification and localisation runs and of published weights, checked in ONNX Runtime;
the ONNX Runtime backend gives the PyTorch backend's predictions."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from sklearn.datasets import load_sample_images
from torch import nn

from cnnkit.deploy import export_onnx, load_onnx, load_predictor
from cnnkit.deploy.loading import random_predictor
from cnnkit.deploy.onnx_backend import session
from cnnkit.errors import CnnkitError
from tests.tasks.test_localize import loc_run, scenes  # noqa: F401 - shared fixtures

PHOTOS = list(load_sample_images().images)  # china.jpg and flower.jpg, 427×640 RGB


def test_classifier_run_exports_and_both_backends_agree(digits_run, dcli, tmp_path):
    out = tmp_path / "digits.onnx"
    code, text, err = dcli("export", digits_run, "--out", out)
    assert code == 0, err
    assert "torchscript exporter" in text and "max difference" in text
    diff = float(text.rsplit("max difference ", 1)[1].split()[0])
    assert diff < 1e-4
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    card = json.loads(meta["cnnkit.card"])
    assert card["classes"] == [str(i) for i in range(10)] and card["preprocessing"]["mode"] == "L"
    # the .onnx alone predicts what the run predicts, through the CLI and the Python API
    images = [tmp_path / f"{i}.png" for i in range(3)]
    for i, f in enumerate(images):
        from PIL import Image

        Image.fromarray(np.random.default_rng(i).integers(0, 255, (8, 8), dtype=np.uint8)).save(f)
    _, eager, _ = dcli("predict", digits_run, *images, "--json", "--topk", "3")
    _, ort, _ = dcli("predict", out, *images, "--json", "--topk", "3")
    for a, b in zip(json.loads(eager), json.loads(ort)):
        assert a["label"] == b["label"]
        assert [n for n, _ in a["topk"]] == [n for n, _ in b["topk"]]
        assert np.allclose([p for _, p in a["topk"]], [p for _, p in b["topk"]], atol=1e-5)
    proba = load_onnx(out).predict_proba(images)  # batch 3: the batch axis is dynamic
    assert torch.allclose(proba, load_predictor(digits_run).predict_proba(images), atol=1e-5)


def test_backend_onnxruntime_exports_the_run_once(digits_run, dcli, tmp_path):
    image = tmp_path / "a.png"
    from PIL import Image

    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(image)
    code, _, err = dcli("predict", digits_run, image, "--backend", "onnxruntime")
    assert code == 0 and "max difference" in err  # exported to RUN/model.onnx
    stamp = (digits_run / "model.onnx").stat().st_mtime_ns
    code, text, err = dcli("predict", digits_run, image, "--backend", "onnxruntime")
    assert code == 0 and "max difference" not in err and (digits_run / "model.onnx").stat().st_mtime_ns == stamp
    assert text == dcli("predict", digits_run, image)[1]


def test_dynamo_exporter_with_a_dynamic_image_size(digits_run, tmp_path):
    pred = load_predictor(digits_run)
    result = export_onnx(pred, tmp_path / "dyn.onnx", dynamic_size=True)
    assert result.exporter == "dynamo" and result.input_shape[0] == "batch"
    assert result.input_shape[2:] == ["height", "width"]
    sess = session(result.path, threads=1)
    x = torch.randn(3, 1, 20, 14)  # neither the batch nor the size it was exported with
    got = sess.run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        want = pred.model(x).numpy()
    assert np.abs(got - want).max() < 1e-4


def test_localisation_run_exports_logits_and_boxes(loc_run, scenes, tmp_path):  # noqa: F811
    eager = load_predictor(loc_run)
    result = export_onnx(eager, tmp_path / "loc.onnx")
    assert result.max_diff < 1e-4
    assert [o.name for o in onnx.load(result.path).graph.output] == ["logits", "boxes"]
    ort = load_onnx(result.path)
    root = scenes["yolo"] if scenes["yolo"].is_dir() else scenes["yolo"].parent  # the folder or its data.yaml
    images = sorted((root / "images").rglob("*.png"))[:4]
    assert images
    for a, b in zip(eager.predict(images, topk=2), ort.predict(images, topk=2)):
        assert a.label == b.label and np.allclose(a.box, b.box, atol=1e-3)
        assert abs(a.probability - b.probability) < 1e-5


def test_pretrained_lite0_exports_and_recognises_the_sample_photos(tmp_path):
    eager = load_predictor(model="efficientnet_lite0", pretrained=True)
    result = export_onnx(eager, tmp_path / "lite0.onnx")
    assert result.max_diff < 1e-4
    assert "Pad" not in {n.op_type for n in onnx.load(result.path).graph.node}  # TF padding is the convs' own
    ort = load_onnx(result.path)
    want, got = eager.predict(PHOTOS, topk=5), ort.predict(PHOTOS, topk=5)
    assert [p.label for p in got] == [p.label for p in want]
    assert got[1].label == "daisy"  # flower.jpg; a real check of the weights and preprocessing in the file
    assert np.allclose([p.probability for p in got], [p.probability for p in want], atol=1e-4)


@pytest.mark.parametrize("size", [(10, 10), (9, 12)])
def test_tensorflow_same_padding_exports_as_the_convs_own_asymmetric_pads(size, tmp_path):
    from cnnkit.models.efficientnet import Conv2dSame

    torch.manual_seed(0)
    model = nn.Sequential(Conv2dSame(3, 4, 3, 2, bias=False), Conv2dSame(4, 4, 5, 2, groups=4, bias=False)).eval()
    x = torch.randn(2, 3, *size)
    torch.onnx.export(model, (x,), tmp_path / "same.onnx", dynamo=False, input_names=["x"])
    graph = onnx.load(tmp_path / "same.onnx").graph
    assert [n.op_type for n in graph.node] == ["Conv", "Conv"]
    got = session(str(tmp_path / "same.onnx")).run(None, {"x": x.numpy()})[0]
    np.testing.assert_allclose(got, model(x).detach().numpy(), atol=1e-5)


def test_tensorflow_same_padding_exports_with_a_dynamic_image_size():
    """Integer ceil-division keeps the pads' arithmetic symbolic: with ``math.ceil`` the dynamo export of Lite0 had
    not finished after 4 minutes (38 s now). Checked at odd and even sizes, which pad differently."""
    from cnnkit.deploy.export import export_proto
    from cnnkit.deploy.specs import SPECS
    from cnnkit.models.efficientnet import Conv2dSame

    torch.manual_seed(0)
    model = nn.Sequential(Conv2dSame(3, 4, 3, 2, bias=False), Conv2dSame(4, 4, 5, 2, groups=4, bias=False)).eval()
    proto = export_proto(model, torch.randn(2, 3, 16, 16), SPECS["classify"], "dynamo", size=True)
    sess = session(proto.SerializeToString())
    for size in [(10, 10), (9, 12), (17, 8)]:
        x = torch.randn(1, 3, *size)
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        np.testing.assert_allclose(got, model(x).detach().numpy(), atol=1e-5)


class SVD(nn.Module):
    """A layer ONNX has no operator for."""

    def forward(self, x):
        return torch.linalg.svd(x.flatten(2))[1]


def test_a_layer_onnx_cannot_represent_is_named(tmp_path):
    pred = random_predictor("lenet5")
    pred.model = nn.Sequential(nn.Conv2d(1, 2, 3), SVD())
    with pytest.raises(CnnkitError, match=r"the layer '1' \(SVD\) can't be exported: .*linalg_svd"):
        export_onnx(pred, tmp_path / "x.onnx", exporter="torchscript")
    assert not (tmp_path / "x.onnx").exists()


def test_bad_input_gets_one_clear_line(digits_run, dcli, tmp_path):
    code, _, err = dcli("export", tmp_path / "nothing")
    assert code == 2 and "expected a run directory" in err and "Traceback" not in err
    code, _, err = dcli("export")
    assert code == 2 and "found neither" in err
    code, _, err = dcli("export", "--model", "lenet5", "--dynamic-size", "--out", tmp_path / "l.onnx")
    assert code == 2 and "fixed" in err
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    code, _, err = dcli("predict", junk, junk)
    assert code == 2 and "can't load" in err
    plain = tmp_path / "plain.onnx"  # a valid ONNX file that cnnkit did not write
    torch.onnx.export(nn.Linear(2, 2), (torch.zeros(1, 2),), str(plain), dynamo=False)
    with pytest.raises(CnnkitError, match="without"):
        load_onnx(plain)
