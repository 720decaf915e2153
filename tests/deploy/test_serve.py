"""The web page and JSON API through FastAPI's TestClient: every status code, limits, and never a hang."""

from __future__ import annotations

import io
import threading
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cnnkit.deploy import load_predictor
from cnnkit.deploy.serve import create_app


def png(size=(32, 24), value=120) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def digits(digits_run):
    return load_predictor(digits_run)


@pytest.fixture(scope="module")
def client(digits):
    return TestClient(create_app(digits, max_bytes=200_000, max_in_flight=2))


def test_page_health_and_openapi(client):
    r = client.get("/")
    assert r.status_code == 200 and 'id="drop"' in r.text and "smallcnn" in r.text
    assert client.get("/health").json() == {"status": "ok", "model": "smallcnn", "task": "classify",
                                            "classes": 10, "backend": "eager"}  # fmt: skip
    assert "/predict" in client.get("/openapi.json").json()["paths"]
    assert client.get("/nothing").status_code == 404 and client.get("/predict").status_code == 405


def test_predict_matches_the_predictor_and_draws_grad_cam(client, digits):
    image = png(value=200)
    r = client.post("/predict?overlay=true", files={"file": ("a.png", image, "image/png")})
    assert r.status_code == 200
    out = r.json()
    want = digits.predict([Image.open(io.BytesIO(image))], topk=5)[0]
    assert out["label"] == want.label and abs(out["probability"] - want.probability) < 1e-6
    assert [t["label"] for t in out["topk"]] == [n for n, _ in want.topk]
    assert out["overlay_kind"] == "Grad-CAM" and out["overlay"].startswith("data:image/png;base64,")


def test_a_jpeg_is_decoded_as_predict_decodes_the_same_file(client, digits, tmp_path):
    from cnnkit.deploy.serve import upload_side

    path = tmp_path / "photo.jpg"  # 8× the model's side: libjpeg may decode it at 1/8 scale, as `cnnkit predict` does
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(path, quality=90)
    r = client.post("/predict", files={"file": ("photo.jpg", path.read_bytes(), "image/jpeg")})
    want = digits.predict([path], topk=5)[0]
    assert r.status_code == 200 and upload_side(digits) == 8
    assert [t["probability"] for t in r.json()["topk"]] == pytest.approx([p for _, p in want.topk], abs=1e-6)
    for task in ("localize", "detect", "segment"):  # boxes and masks are answered in the upload's own pixels
        assert upload_side(SimpleNamespace(card=SimpleNamespace(task=task), decode_side=8)) is None


def test_bad_requests_get_their_status(client, tmp_path):
    assert client.post("/predict").status_code == 422  # no file field
    r = client.post("/predict", files={"file": ("a.txt", b"hello, not an image", "text/plain")})
    assert r.status_code == 415 and "not an image" in r.json()["detail"]
    r = client.post("/predict", files={"file": ("a.png", png()[:60], "image/png")})  # truncated
    assert r.status_code == 415
    r = client.post("/predict", files={"file": ("big.png", b"\0" * 300_000, "image/png")})
    assert r.status_code == 413 and "at most 200000 bytes" in r.json()["detail"]
    bomb = io.BytesIO()  # 12,000 × 12,000 pixels in a few kB: over Pillow's safety limit
    Image.new("1", (12_000, 12_000)).save(bomb, format="PNG")
    assert len(bomb.getvalue()) < 200_000
    r = client.post("/predict", files={"file": ("bomb.png", bomb.getvalue(), "image/png")})
    assert r.status_code == 415 and "decompression bomb" in r.json()["detail"]


def test_too_many_requests_in_flight_get_503_not_a_queue(digits):
    started, release = threading.Event(), threading.Event()
    model, _ = digits.inference_model()  # the module predictions run on

    def blocking_forward(x):
        started.set()
        release.wait(10)
        return model.__class__.forward(model, x)

    app = create_app(digits, max_in_flight=1)
    client = TestClient(app)
    original = model.forward
    model.forward = blocking_forward
    try:
        first = {}
        t = threading.Thread(target=lambda: first.update(r=client.post("/predict", files={"file": png()})))
        t.start()
        assert started.wait(10)
        r = client.post("/predict", files={"file": ("a.png", png(), "image/png")})
        assert r.status_code == 503 and "at most 1 requests at once" in r.json()["detail"]
        assert client.get("/health").status_code == 200  # other routes still answer
        release.set()
        t.join(10)
        assert first["r"].status_code == 200
    finally:
        release.set()
        model.forward = original
    assert client.post("/predict", files={"file": ("a.png", png(), "image/png")}).status_code == 200


def test_serve_command_bad_input_is_one_line(dcli, tmp_path):
    code, _, err = dcli("serve")
    assert code == 2 and "found neither" in err and "Traceback" not in err
    code, _, err = dcli("serve", tmp_path / "missing.onnx")
    assert code == 2 and "expected an .onnx file" in err
    code, _, err = dcli("serve", "--model", "lenet5")
    assert code == 2 and "--pretrained or --weights" in err


def test_the_app_predicts_once_before_its_first_request(digits_run):
    predictor = load_predictor(digits_run)
    seen, predict = [], predictor.predict
    predictor.predict = lambda images, topk=1: seen.append(images) or predict(images, topk)
    create_app(predictor)  # the folded copy is made and the kernels set up here, not on a user's request
    [[image]] = seen
    assert image.size == (predictor.card.input.width, predictor.card.input.height) and image.mode == "L"
