"""``cnnkit serve`` for a detect and a segment run: the objects as JSON (boxes in the upload's pixels, masks as COCO
RLE), ``?conf=``, and the overlay with the boxes or masks drawn."""

from __future__ import annotations

import base64
import io

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image
from pycocotools import mask as mask_utils

from cnnkit.deploy import load_predictor
from cnnkit.deploy.serve import create_app
from tests.deploy.test_export_detect import scene_images, sure_of_itself
from tests.detection.conftest import det_scenes, yolo_run  # noqa: F401 - shared fixtures
from tests.segmentation.conftest import seg_run, seg_scenes  # noqa: F401


def overlay_size(answer: dict) -> tuple[int, int]:
    assert answer["overlay"].startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(answer["overlay"].split(",", 1)[1]))).size


def test_a_detector_answers_its_objects_and_draws_their_boxes(yolo_run, det_scenes, tmp_path):  # noqa: F811
    images = scene_images(det_scenes)
    run = sure_of_itself(yolo_run, tmp_path / "sure", images)
    predictor = load_predictor(run)
    client = TestClient(create_app(predictor))
    image = next(im for im, p in zip(images, predictor.predict(images)) if p.objects)
    r = client.post("/predict?overlay=true", files={"file": (image.name, image.read_bytes(), "image/png")})
    assert r.status_code == 200, r.text
    answer, want = r.json(), predictor.predict([image])[0]
    assert answer["task"] == "detect" and answer["overlay_kind"] == "Boxes"
    assert [(o["label"], o["box"]) for o in answer["objects"]] == [(o.label, list(o.box)) for o in want.objects]
    assert all(o["score"] >= 0.25 for o in answer["objects"])  # the task's own threshold
    assert overlay_size(answer) == (256, 256)  # the 32×32 scene, drawn 8× larger
    fewer = client.post("/predict?conf=0.9", files={"file": (image.name, image.read_bytes(), "image/png")}).json()
    assert all(o["score"] >= 0.9 for o in fewer["objects"]) and len(fewer["objects"]) <= len(answer["objects"])
    assert client.post("/predict?conf=2", files={"file": ("a.png", image.read_bytes(), "image/png")}).status_code == 422


def test_a_segmenter_answers_masks_as_coco_rle_and_draws_them(seg_run, seg_scenes):  # noqa: F811
    predictor = load_predictor(seg_run)
    client = TestClient(create_app(predictor))
    images = sorted((seg_scenes / "images").rglob("*.png"))[:4]
    image = next(im for im, p in zip(images, predictor.predict(images, conf=0.01)) if p.objects)
    r = client.post("/predict?overlay=true&conf=0.01", files={"file": ("a.png", image.read_bytes(), "image/png")})
    assert r.status_code == 200, r.text
    answer, want = r.json(), predictor.predict([image], conf=0.01)[0]
    assert answer["task"] == "segment" and answer["overlay_kind"] == "Masks" and answer["objects"]
    for o, w, m in zip(answer["objects"], want.objects, want.masks):
        decoded = mask_utils.decode({"size": o["mask"]["size"], "counts": o["mask"]["counts"].encode()})
        assert o["mask"]["size"] == [48, 48] and np.array_equal(decoded.astype(bool), m.numpy())
        assert (o["label"], o["area"]) == (w.label, w.area) == (o["label"], int(decoded.sum()))
    assert overlay_size(answer) == (240, 240)  # 48×48, drawn 5× larger
    default = client.post("/predict", files={"file": ("a.png", image.read_bytes(), "image/png")}).json()["objects"]
    assert [o["score"] for o in default] == [o["score"] for o in answer["objects"] if o["score"] >= 0.5]  # its own 0.5
