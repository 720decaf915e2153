"""Prediction from a run directory: the Python API and `cnnkit predict`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import cnnkit
from cnnkit.config import DataConfig
from cnnkit.data import load_data
from cnnkit.errors import CnnkitError


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory, digits_run):
    """Test-split digits saved as PNG files with their true labels."""
    d = load_data(DataConfig(name="digits"), seed=1)
    out = tmp_path_factory.mktemp("digits")
    files = []
    for i in range(20):
        img, label = d.test[i]
        path = out / f"{i}_{label}.png"
        Image.fromarray(img[0].numpy(), "L").save(path)
        files.append((path, label))
    return files


def test_load_api(digits_run, digit_files):
    p = cnnkit.load(digits_run)
    assert p.classes == [str(i) for i in range(10)]
    assert isinstance(p.model, torch.nn.Module) and not p.model.training
    preds = p.predict([f for f, _ in digit_files], topk=3)
    assert len(preds) == 20 and all(len(q.topk) == 3 for q in preds)
    assert all(q.topk[0][1] >= q.topk[1][1] >= q.topk[2][1] for q in preds)
    accuracy = np.mean([q.index == label for q, (_, label) in zip(preds, digit_files)])
    assert accuracy >= 0.6  # a 2-epoch model; chance is 0.1


def test_files_arrays_and_pil_images_agree(digits_run, digit_files):
    p = cnnkit.load(digits_run)
    path = digit_files[0][0]
    arr = np.array(Image.open(path))
    probs = p.predict_proba([path, arr, Image.open(path), torch.from_numpy(arr)[None]])
    assert probs.shape == (4, 10)
    assert torch.allclose(probs, probs[:1].expand(4, -1), atol=1e-6)
    assert torch.allclose(probs.sum(1), torch.ones(4), atol=1e-5)
    assert not probs.requires_grad  # the model ran without building an autograd graph (~40 % of batch-1 latency)


def test_rgba_photo_on_a_grayscale_model(digits_run, tmp_path):
    Image.new("RGBA", (40, 30), (200, 10, 10, 128)).save(tmp_path / "x.png")
    assert cnnkit.load(digits_run).predict([tmp_path / "x.png"])[0].label in [str(i) for i in range(10)]


def test_cli_predict_text_and_json(cli, digits_run, digit_files):
    files = [str(f) for f, _ in digit_files[:3]]
    code, out, _ = cli("predict", digits_run, *files, "--topk", "2")
    assert code == 0 and len(out.strip().splitlines()) == 3 and "%" in out
    code, out, _ = cli("predict", digits_run, *files, "--json")
    rows = json.loads(out)
    assert code == 0 and [r["image"] for r in rows] == files and {"label", "probability", "topk"} <= set(rows[0])


def test_predict_bad_image_is_one_line(cli, digits_run, tmp_path):
    (tmp_path / "x.png").write_text("hello")
    code, _, err = cli("predict", digits_run, tmp_path / "x.png")
    assert code == 2 and "x.png" in err and len(err.strip().splitlines()) == 1


def test_a_folder_streams_in_chunks_and_skip_bad_predicts_the_others(cli, digits_run, digit_files, tmp_path,
                                                                      monkeypatch):  # fmt: skip
    import cnnkit.cli.predict as predict_cli

    folder = tmp_path / "scans"
    folder.mkdir()
    for f, _ in digit_files[:5]:
        (folder / f.name).write_bytes(f.read_bytes())
    code, whole, _ = cli("predict", digits_run, folder, "--json")
    assert code == 0 and len(json.loads(whole)) == 5
    monkeypatch.setattr(predict_cli, "CHUNK", 2)  # 5 images: chunks of 2, 2 and 1
    code, chunked, _ = cli("predict", digits_run, folder, "--json")
    assert code == 0 and [(r["image"], r["label"]) for r in json.loads(chunked)] == [
        (r["image"], r["label"]) for r in json.loads(whole)
    ]  # the same images and answers (probabilities agree to float rounding: the batches differ)
    assert [r["probability"] for r in json.loads(chunked)] == pytest.approx(
        [r["probability"] for r in json.loads(whole)]
    )

    (folder / "2_broken.png").write_bytes(b"not a png")  # in the second chunk, sorted among the others
    code, _, err = cli("predict", digits_run, folder)
    assert code == 2 and "2_broken.png" in err and "pass --skip-bad to predict the others" in err
    code, out, err = cli("predict", digits_run, folder, "--skip-bad", "--json")
    rows = json.loads(out)  # the JSON stays whole: what was skipped is said on stderr
    assert code == 0 and [r["image"] for r in rows] == [r["image"] for r in json.loads(whole)]
    assert f"skipped {folder / '2_broken.png'}: " in err and "5 images in" in err and "1 skipped" in err
    code, out, _ = cli("predict", digits_run, folder, "--skip-bad")
    assert code == 0 and [line.split(":")[0] for line in out.splitlines()] == [r["image"] for r in rows]


def test_load_not_a_run(tmp_path):
    with pytest.raises(CnnkitError, match="model.json"):
        cnnkit.load(tmp_path)


def test_device_flag_runs_where_asked_and_a_missing_gpu_is_one_line(cli, digits_run, digit_files):
    path = digit_files[0][0]
    code, out, err = cli("predict", digits_run, path, "--device", "cpu")
    assert code == 0 and str(path) in out, err
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: --device cuda would run")
    code, _, err = cli("predict", digits_run, path, "--device", "cuda")
    assert code == 2 and "CUDA" in err and len(err.strip().splitlines()) == 1


def test_predictions_run_on_the_inference_copy_and_the_model_stays_as_trained(digits_run, digit_files):
    p = cnnkit.load(digits_run)
    paths = [f for f, _ in digit_files[:8]]
    x = p.normalize(torch.stack([p.to_tensor(f) for f in paths]))
    with torch.no_grad():
        want = torch.softmax(p.model(x), 1)
    torch.testing.assert_close(p.predict_proba(paths), want, rtol=1e-4, atol=1e-5)
    fast, _ = p.inference_model()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in p.model.modules()) == 6  # explain shows smallcnn's BNs
    assert p.inference_model()[0] is fast  # made once
    other = cnnkit.load(digits_run).model
    with torch.no_grad():
        other.fc.bias[0] += 50.0  # a model that answers "0" to everything
    p.model = other
    assert [q.label for q in p.predict(paths)] == ["0"] * 8  # a replaced model gets its own copy
    p.model.load_state_dict(cnnkit.load(digits_run).model.state_dict())  # weights loaded in place: a new copy too
    torch.testing.assert_close(p.predict_proba(paths), want, rtol=1e-4, atol=1e-5)
