"""The convolutional sliding window: a classifier's FC layers as convolutions give, in one pass, the scores the
classifier gives each explicit window; and ``cnnkit detect windows`` on a classification run."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from torch import nn

from cnnkit.detection.windows import fully_convolutional, sliding_windows, window_crops
from cnnkit.errors import CnnkitError
from cnnkit.models import create_model

UNPADDED = {  # classifiers without zero padding: a window sees the same pixels in a crop as in the whole image
    "lenet5_32": """
input: [1, 32, 32]
layers:
  - {type: conv, out: 6, kernel: 5}
  - {type: tanh}
  - {type: pool, mode: avg, kernel: 2}
  - {type: conv, out: 16, kernel: 5}
  - {type: tanh}
  - {type: pool, mode: avg, kernel: 2}
  - {type: conv, out: 120, kernel: 5}
  - {type: tanh}
  - {type: flatten}
  - {type: fc, out: 84}
  - {type: tanh}
  - {type: fc}
""",
    "vgg_like": """
input: [3, 24, 24]
layers:
  - {type: conv, out: 8, kernel: 3}
  - {type: relu}
  - {type: pool, kernel: 2}
  - {type: conv, out: 16, kernel: 3}
  - {type: relu}
  - {type: pool, kernel: 2}
  - {type: flatten}
  - {type: fc, out: 32}
  - {type: relu}
  - {type: dropout}
  - {type: fc}
""",
}


@pytest.mark.parametrize("name", sorted(UNPADDED))
def test_the_convolutional_score_map_equals_the_classifier_on_each_window(name, tmp_path):
    from cnnkit.models.spec import build_spec_model

    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\nnum_classes: 5\n{UNPADDED[name]}")
    torch.manual_seed(0)
    model = build_spec_model(str(path), num_classes=5).eval()
    fcn = fully_convolutional(model)
    c, h, w = model.default_input
    x = torch.randn(1, c, h + 3 * fcn.stride, w + 2 * fcn.stride)
    with torch.no_grad():
        score_map = fcn(x)[0]  # [K, rows, cols]
        crops, boxes = window_crops(x[0], h, fcn.stride)
        explicit = model(crops)
    assert fcn.stride == 4 and score_map.shape == (5, 4, 3)
    assert torch.allclose(score_map.permute(1, 2, 0).reshape(-1, 5), explicit, atol=1e-4)
    assert boxes[1].tolist() == [fcn.stride, 0, fcn.stride + w, h]  # rows first, stride apart


@pytest.mark.parametrize(("name", "chans"), [("lenet5", 1), ("alexnet", 3), ("smallcnn", 1)])
def test_zoo_classifiers_convert_and_give_one_score_per_window(name, chans):
    """Zoo models pad their convolutions, so a window's border sees its neighbours in the whole image and zeros
    in a crop: the conversion reproduces the classifier on an image of its own size, and maps larger ones."""
    model = create_model(name, num_classes=5, in_chans=chans).eval()
    fcn = fully_convolutional(model)  # checks itself against the classifier on inputs of its own size
    c, h, w = model.default_input
    with torch.no_grad():
        assert fcn(torch.randn(1, c, h + 2 * fcn.stride, w + fcn.stride)).shape == (1, 5, 3, 2)


def test_strides_follow_the_pooling_arithmetic():
    assert fully_convolutional(create_model("lenet5", num_classes=3, in_chans=1)).stride == 4  # two 2×2 pools
    assert fully_convolutional(create_model("alexnet", num_classes=3)).stride == 32  # 4 · 2 · 2 · 2


def test_a_head_with_other_layers_is_refused():
    model = create_model("lenet5", num_classes=3, in_chans=1)
    model.pre_logits.append(nn.BatchNorm1d(84))
    with pytest.raises(CnnkitError, match="BatchNorm1d"):
        fully_convolutional(model)


def test_explicit_and_convolutional_windows_find_the_same_boxes(tmp_path):
    from cnnkit.models.spec import build_spec_model

    path = tmp_path / "lenet.yaml"
    path.write_text(f"name: lenet\nnum_classes: 4\n{UNPADDED['lenet5_32']}")
    torch.manual_seed(1)
    model = build_spec_model(str(path), num_classes=4).eval()
    image = torch.randn(1, 40, 48)
    kw = {"window": 32, "scales": (1.0,), "threshold": 0.0, "iou": 0.99}
    slow = sliding_windows(model, image, stride=4, **kw)
    fast = sliding_windows(fully_convolutional(model), image, stride=4, convolutional=True, **kw)
    assert slow.windows == fast.windows == 3 * 5
    order_s, order_f = slow.scores.argsort(), fast.scores.argsort()
    assert torch.allclose(slow.boxes[order_s], fast.boxes[order_f])
    assert torch.allclose(slow.scores[order_s], fast.scores[order_f], atol=1e-5)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    from cnnkit.cli import main

    out = tmp_path_factory.mktemp("win") / "lenet"
    assert main(["train", "--model", "lenet5", "--data", "digits", "--epochs", "1", "--out", str(out), "--quiet",
                 "--set", "data.image_size=28"]) == 0  # fmt: skip
    return out


def parser() -> argparse.ArgumentParser:
    from cnnkit.cli import detect

    p = argparse.ArgumentParser()
    detect.add_commands(p.add_subparsers())
    return p


@pytest.mark.parametrize("conv", [False, True])
def test_detect_windows_command_counts_windows_and_prints_boxes(digits_run, tmp_path, capsys, conv):
    from PIL import Image

    path = tmp_path / "scene.png"
    Image.fromarray((torch.rand(60, 60) * 255).byte().numpy()).save(path)
    args = parser().parse_args(
        [
            "detect",
            "windows",
            str(digits_run),
            str(path),
            "--window",
            "28",
            "--stride",
            "4",
            "--scales",
            "1",
            "0.4",
            "--threshold",
            "0.0",
            "--json",
            *(["--conv"] if conv else []),
        ]
    )
    assert args.func(args) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["windows"] == 9 * 9  # 60 px: (60 − 28) / 4 + 1 = 9 per side; at 0.4 the image is under 28 px
    assert found["objects"] and all(len(o["box"]) == 4 for o in found["objects"])


def test_a_run_of_another_task_is_refused_in_one_line(yolo_run, tmp_path, cli):
    from PIL import Image

    path = tmp_path / "scene.png"
    Image.new("RGB", (32, 32)).save(path)
    code, _, err = cli("detect", "windows", yolo_run, path)  # a detector's weights are not a classifier's
    assert code == 2 and "expected a classify run in" in err and "found a detect run" in err
