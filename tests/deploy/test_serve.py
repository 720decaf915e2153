"""The web page and JSON API through FastAPI's TestClient: every status code, limits, and never a hang."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cnnkit.deploy import load_predictor
from cnnkit.deploy.serve import Limits, create_app

from .conftest import served


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


def test_an_upload_that_stalls_or_dawdles_gets_408_and_frees_its_place():
    async def app(scope, receive, send):  # what the app would answer, once the body is in
        raise AssertionError("the app must not see a request whose body never came")

    def run(*messages, pause=0.0):
        """Drive Limits with a body that arrives as ``messages`` (``pause`` s apart), then never finishes."""
        sent, pending = [], list(messages)

        async def receive():
            if not pending:
                await asyncio.sleep(3600)  # a client that stopped sending
            await asyncio.sleep(pause)
            return {"type": "http.request", "body": pending.pop(0), "more_body": True}

        async def send(message):
            sent.append(message)

        limits = Limits(app, max_bytes=1000, max_in_flight=1, upload_s=0.6, stall_s=0.2)
        scope = {"type": "http", "path": "/predict", "method": "POST", "headers": [(b"content-length", b"900")]}
        t0 = time.monotonic()
        asyncio.run(limits(scope, receive, send))
        assert limits.in_flight == 0  # its place among the requests in flight is free again
        start, body = sent
        assert start["status"] == 408 and (b"connection", b"close") in start["headers"]
        return body["body"].decode(), time.monotonic() - t0

    detail, took = run(b"x" * 10)  # stalls after 10 bytes
    assert "found it stopped after 10 bytes" in detail and "no pause over 0.2 s" in detail
    assert took < 30  # the stall timer fired: no hour-long wait (a bound on hanging, not a speed figure)
    detail, took = run(*[b"y"] * 100, pause=0.1)  # never pauses 0.2 s, but is not in within 0.6 s
    assert "within 0.6 s" in detail and 0.5 <= took < 30  # not before the deadline, and not never


def test_a_client_that_stops_sending_does_not_lock_the_server_out(digits):
    """On a real socket: the stalled upload gets 408 and its connection is closed; the next upload is answered."""
    app = create_app(digits, max_in_flight=1, upload_s=1.0, stall_s=0.5)
    with served(app) as port:
        stalled = socket.create_connection(("127.0.0.1", port), timeout=10)
        stalled.sendall(b"POST /predict HTTP/1.1\r\nHost: a\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                        b"Content-Length: 5000\r\n\r\n--b\r\n")  # fmt: skip
        answer = b""
        while chunk := stalled.recv(4096):  # until the server closes the connection
            answer += chunk
        stalled.close()
        assert answer.startswith(b"HTTP/1.1 408") and b"found it stopped after 5 bytes" in answer
        r = httpx.post(f"http://127.0.0.1:{port}/predict", files={"file": ("a.png", png(), "image/png")}, timeout=10)
        assert r.status_code == 200 and r.json()["label"] in digits.card.classes


def test_serve_command_bad_input_is_one_line(dcli, tmp_path):
    code, _, err = dcli("serve")
    assert code == 2 and "found neither" in err and "Traceback" not in err
    code, _, err = dcli("serve", tmp_path / "missing.onnx")
    assert code == 2 and "expected an .onnx file" in err
    code, _, err = dcli("serve", "--model", "lenet5")
    assert code == 2 and "--pretrained or --weights" in err
    code, _, err = dcli("serve", "--model", "lenet5", "--max-in-flight", "0")
    assert code == 2 and "expected --max-in-flight above 0, found 0" in err
    code, _, err = dcli("serve", "--model", "lenet5", "--upload-timeout", "nan")
    assert code == 2 and "expected --upload-timeout above 0, found nan" in err


def test_an_address_that_cannot_be_bound_is_one_line():
    from cnnkit.deploy.serve import bind
    from cnnkit.errors import CnnkitError

    taken = bind("127.0.0.1", 0)
    taken.listen()
    port = taken.getsockname()[1]
    try:
        with pytest.raises(CnnkitError, match=f"expected to bind 127.0.0.1:{port}, found .*in use; pick another"):
            bind("127.0.0.1", port)
    finally:
        taken.close()
    with pytest.raises(CnnkitError, match="expected a port from 0 to 65535, found 70000; check --port"):
        bind("127.0.0.1", 70000)
    with pytest.raises(CnnkitError, match="found no-such-host.invalid:8000: .*; check --host"):
        bind("no-such-host.invalid", 8000)


def test_the_app_predicts_once_before_its_first_request(digits_run):
    predictor = load_predictor(digits_run)
    seen, predict = [], predictor.predict
    predictor.predict = lambda images, topk=1: seen.append(images) or predict(images, topk)
    create_app(predictor)  # the folded copy is made and the kernels set up here, not on a user's request
    [[image]] = seen
    assert image.size == (predictor.card.input.width, predictor.card.input.height) and image.mode == "L"
