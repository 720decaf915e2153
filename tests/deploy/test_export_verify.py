"""ONNX export of a verify run: normalised images Tensor[N, C, H, W] -> embeddings Tensor[N, D], the batch axis
dynamic, the run's distance threshold in the metadata; the predictors refuse to classify in one line."""

from __future__ import annotations

import json

import numpy as np
import onnx
import torch
from PIL import Image
from sklearn.datasets import load_digits

from cnnkit.deploy import load_onnx, load_predictor
from cnnkit.deploy.onnx_backend import session
from tests.verification.conftest import run  # noqa: F401 - the shared verify run


def _digits(n: int) -> list[np.ndarray]:
    """The first ``n`` of scikit-learn's digits as 8×8 uint8 images."""
    return [(im * 16).clip(0, 255).astype(np.uint8) for im in load_digits().images[:n]]


def test_a_verify_run_exports_its_embeddings_and_threshold(run, dcli, tmp_path):  # noqa: F811
    out = tmp_path / "verify.onnx"
    code, text, err = dcli("export", run, "--out", out)
    assert code == 0, err
    assert "torchscript exporter" in text and float(text.rsplit("max difference ", 1)[1].split()[0]) < 1e-4
    proto = onnx.load(out)
    meta = {p.key: p.value for p in proto.metadata_props}
    record = json.loads((run / "verify.json").read_text())  # chosen on the validation pairs
    assert float(meta["cnnkit.threshold"]) == record["threshold"] and meta["cnnkit.distance"] == "squared euclidean"
    card = json.loads(meta["cnnkit.card"])
    assert card["task"] == "verify" and card["preprocessing"]["mode"] == "L" and card["preprocessing"]["resize"]
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    assert [o.name for o in proto.graph.output] == ["embeddings"]
    assert dims[0].dim_param == "batch" and dims[1].dim_value == card["task_fields"]["embedding_dim"]

    eager, images = load_predictor(run), _digits(5)  # batch 5: not the 2 it was exported with
    x = eager.normalize(torch.stack([eager.to_tensor(im) for im in images]))
    got = torch.from_numpy(session(out, threads=1).run(None, {"image": x.numpy()})[0])
    with torch.no_grad():
        want = eager.model(x)
    assert got.shape == want.shape and (got - want).abs().max() < 1e-4
    assert torch.allclose(load_onnx(out).embed(images), eager.embed(images), atol=1e-4)  # the file's predictor


def test_predict_on_a_verify_run_or_its_file_is_one_line(run, dcli, tmp_path):  # noqa: F811
    image = tmp_path / "seven.png"
    Image.fromarray(_digits(8)[7]).save(image)
    out = tmp_path / "verify.onnx"
    assert dcli("export", run, "--out", out)[0] == 0
    for source in (run, out):
        code, text, err = dcli("predict", source, image)
        assert code == 2 and not text and len(err.strip().splitlines()) == 1, err
        assert "verify run" in err and "embed" in err
    code, _, err = dcli("predict", run, image, "--backend", "onnxruntime")
    assert code == 2 and "verify run" in err
    assert not (run / "model.onnx").exists()  # refused before an export it could not use
    for source in (run, out):  # serve refuses before it binds a port (a free one: it must not get that far)
        code, _, err = dcli("serve", source, "--port", "0")
        assert code == 2 and len(err.strip().splitlines()) == 1 and "verify run" in err, err


def test_the_exported_file_alone_verifies_as_the_run_does(run, digits_run, dcli, tmp_path):  # noqa: F811
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(_digits(8)[7]).save(a)
    Image.fromarray(_digits(8)[3]).save(b)
    out = tmp_path / "verify.onnx"
    assert dcli("export", run, "--out", out)[0] == 0
    code, by_run, err = dcli("verify", run, a, b, "--json")
    assert code == 0, err
    code, by_file, err = dcli("verify", out, a, b, "--json")  # its threshold comes from the file's metadata
    assert code == 0, err
    by_run, by_file = json.loads(by_run), json.loads(by_file)
    assert by_file["threshold"] == by_run["threshold"] and by_file["same"] == by_run["same"]
    assert abs(by_file["distance"] - by_run["distance"]) < 1e-4
    gallery = tmp_path / "gallery"  # one image per person: the one-shot case, enrolled into the file's gallery
    for name, image in (("seven", a), ("three", b)):
        (gallery / name).mkdir(parents=True)
        (gallery / name / "1.png").write_bytes(image.read_bytes())
    for source in (run, out):
        code, text, err = dcli("verify", "enroll", source, "--gallery", gallery)
        assert code == 0 and "enrolled 2 identities (2 images)" in text, err
    assert (tmp_path / "verify.gallery.safetensors").is_file() and (tmp_path / "verify.gallery.json").is_file()
    by_run = json.loads(dcli("verify", "identify", run, a, b, "--json")[1])
    by_file = json.loads(dcli("verify", "identify", out, a, b, "--json")[1])
    assert [r["matches"][0]["identity"] for r in by_file] == ["seven", "three"]  # each enrolled image finds itself
    assert [[m["identity"] for m in r["matches"]] for r in by_file] == [[m["identity"] for m in r["matches"]]
                                                                        for r in by_run]  # fmt: skip
    code, _, err = dcli("verify", tmp_path / "missing.onnx", a, b)
    assert code == 2 and "expected an .onnx file, found nothing" in err
    assert dcli("export", digits_run, "--out", tmp_path / "classifier.onnx")[0] == 0
    code, _, err = dcli("verify", tmp_path / "classifier.onnx", a, b)
    assert code == 2 and "expected a verify model in" in err and "found a classify model" in err
