"""Faces in photographs: MTCNN with the published weights (facenet-pytorch's files, never the package) finds the
astronaut's face where a person sees it; the alignment's similarity transform and crop on worked examples; the
``cnnkit faces detect`` command and its errors."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.ops import box_iou

import cnnkit.cli
from cnnkit.cli import main
from cnnkit.errors import CnnkitError
from cnnkit.verification.align import TEMPLATE_112, align_face, similarity
from cnnkit.verification.mtcnn import MTCNN, crops, weights_dir

skimage_data = pytest.importorskip("skimage.data")

try:
    weights_dir()
    NO_WEIGHTS = ""
except CnnkitError as e:
    NO_WEIGHTS = f"MTCNN weights not installed ({e})"
needs_weights = pytest.mark.skipif(bool(NO_WEIGHTS), reason=NO_WEIGHTS or "-")

# Read by eye from the 512×512 photo, on a 10-pixel grid enlarged 4×: the face from the hairline (y ≈ 78) to the
# chin (y ≈ 178), cheek to cheek x ≈ 180–262; eyes at (205, 101) and (245, 102), nose tip (225, 125), mouth
# corners (205, 141) and (240, 140).
ASTRONAUT_FACE = torch.tensor([[180.0, 78.0, 262.0, 178.0]])
ASTRONAUT_MARKS = torch.tensor([[205.0, 101], [245, 102], [225, 125], [205, 141], [240, 140]])


@pytest.fixture(scope="module")
def mtcnn() -> MTCNN:
    return MTCNN.pretrained()


def astronaut() -> torch.Tensor:
    return torch.from_numpy(skimage_data.astronaut()).permute(2, 0, 1).contiguous()  # uint8 [3, 512, 512]


@needs_weights
def test_mtcnn_finds_the_astronauts_face_and_landmarks(mtcnn: MTCNN) -> None:
    faces = mtcnn.detect(astronaut())
    assert len(faces.scores) == 1 and float(faces.scores[0]) > 0.9
    assert float(box_iou(faces.boxes, ASTRONAUT_FACE)[0, 0]) > 0.6
    assert (faces.landmarks[0] - ASTRONAUT_MARKS).norm(dim=1).max() < 8  # pixels


@needs_weights
def test_mtcnn_finds_no_face_in_a_plain_image_or_a_cat(mtcnn: MTCNN) -> None:
    assert len(mtcnn.detect(torch.full((3, 240, 320), 128, dtype=torch.uint8)).scores) == 0
    cat = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1).contiguous()
    assert len(mtcnn.detect(cat).scores) == 0


@needs_weights
def test_mtcnn_finds_a_smaller_face_at_its_place_in_a_bigger_picture(mtcnn: MTCNN) -> None:
    small = torch.nn.functional.interpolate(astronaut()[None].float(), scale_factor=0.5, mode="area")[0]
    canvas = torch.full((3, 400, 600), 200, dtype=torch.uint8)
    canvas[:, 100:356, 300:556] = small.round().to(torch.uint8)  # the photo at half size, shifted by (300, 100)
    faces = mtcnn.detect(canvas)
    expected = ASTRONAUT_FACE / 2 + torch.tensor([300.0, 100, 300, 100])
    assert len(faces.scores) == 1 and float(box_iou(faces.boxes, expected)[0, 0]) > 0.5


def test_weights_dir_says_how_to_install_when_the_package_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(CnnkitError, match=r"pip install --no-deps facenet-pytorch"):
        weights_dir()


def test_pyramid_scales_stop_when_a_12_pixel_window_no_longer_fits() -> None:
    m = MTCNN(min_face=24, factor=0.5)  # scales 0.5, 0.25, 0.125 on a 100-px side: 50, 25, 12.5 px
    assert m.scales(100, 300) == [0.5, 0.25, 0.125]
    with pytest.raises(CnnkitError, match="at least 12"):
        MTCNN(min_face=8)


def test_crops_pad_outside_the_image_with_zeros() -> None:
    image = torch.full((3, 10, 10), 100, dtype=torch.uint8)
    out = crops(image, torch.tensor([[-10.0, 0, 10, 20]]), 4)  # left half and bottom half are outside
    assert out.shape == (1, 3, 4, 4)
    assert out[0, :, :2, 2:].eq(100).all() and out[0, :, :, :2].eq(0).all() and out[0, :, 2:].eq(0).all()


def test_similarity_recovers_a_known_rotation_scale_and_shift() -> None:
    angle, scale, shift = math.radians(30), 1.5, torch.tensor([4.0, -2.0])
    rot = scale * torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    src = torch.tensor([[0.0, 0], [10, 0], [5, 5], [2, 9], [8, 9]])
    m = similarity(src, src @ rot.T + shift)
    assert torch.allclose(m, torch.cat([rot, shift[:, None]], 1), atol=1e-4)


def test_align_face_puts_each_landmark_on_the_template() -> None:
    marks = torch.tensor([[60.0, 40], [100, 50], [75, 70], [60, 90], [95, 98]])  # a tilted face in a 160×200 image
    for i in (0, 1, 4):
        image = torch.zeros(3, 160, 200, dtype=torch.uint8)
        x, y = marks[i].long().tolist()
        image[:, y - 1 : y + 2, x - 1 : x + 2] = 255  # a 3×3 spot on landmark i
        crop = align_face(image, marks, size=112)[0].float()
        peak = divmod(int(crop.argmax()), 112)  # (row, column)
        fit = similarity(marks, TEMPLATE_112)
        expected = marks[i] @ fit[:, :2].T + fit[:, 2]  # where the fitted transform sends it (≈ the template)
        assert abs(peak[1] - expected[0]) <= 1.5 and abs(peak[0] - expected[1]) <= 1.5


def _with_faces_command(monkeypatch: pytest.MonkeyPatch) -> None:
    if "cnnkit.cli.faces" not in cnnkit.cli.STAGE_COMMANDS:
        monkeypatch.setattr(cnnkit.cli, "STAGE_COMMANDS", (*cnnkit.cli.STAGE_COMMANDS, "cnnkit.cli.faces"))


@needs_weights
def test_cli_faces_detect_prints_json_and_draws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    _with_faces_command(monkeypatch)
    photo = tmp_path / "astronaut.jpg"
    Image.fromarray(skimage_data.astronaut()).save(photo, quality=95)
    assert main(["faces", "detect", str(photo), "--json", "--out", str(tmp_path / "drawn")]) == 0
    [record] = json.loads(capsys.readouterr().out)
    [face] = record["faces"]
    assert float(box_iou(torch.tensor([face["box"]]), ASTRONAUT_FACE)[0, 0]) > 0.6
    drawn = Image.open(record["drawn"]).convert("RGB")
    eye = tuple(round(v) for v in face["landmarks"][0])
    x1, y1, _, y2 = (round(v) for v in face["box"])
    assert drawn.size == (512, 512) and drawn.getpixel(eye) == (255, 0, 0)  # the landmark dot, red
    assert drawn.getpixel((x1, (y1 + y2) // 2)) == (0, 255, 0)  # the box's left edge, lime
    assert main(["faces", "detect", str(photo)]) == 0
    text = capsys.readouterr().out
    assert "1 face\n  face 1: box " in text and "landmarks (" in text


def test_cli_faces_detect_bad_photo_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    _with_faces_command(monkeypatch)
    if NO_WEIGHTS:
        pytest.skip(NO_WEIGHTS)
    assert main(["faces", "detect", str(tmp_path / "missing.jpg")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.jpg" in err and "no such file" in err
