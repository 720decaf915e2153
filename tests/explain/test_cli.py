"""``cnnkit explain`` and ``cnnkit visualize`` end to end, in-process."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

PNGS = ("filters.png", "feature_maps.png", "gradcam.png", "occlusion.png", "kernels_vs_filters.png")


@pytest.fixture(scope="module")
def digit_png(tmp_path_factory):
    """An 8×8 digit '3' from scikit-learn, saved as a grayscale PNG."""
    d = load_digits()
    i = int(np.flatnonzero(d.target == 3)[0])
    path = tmp_path_factory.mktemp("img") / "three.png"
    Image.fromarray(np.clip(d.images[i] * 16, 0, 255).astype(np.uint8)).save(path)
    return path


def test_explain_alexnet_prints_the_notes_shapes_and_totals(cli):
    code, out, _ = cli("explain", "alexnet")
    assert code == 0
    for shape in ("55×55×96", "27×27×256", "13×13×384", "6×6×256"):
        assert shape in out
    assert "total: 62,378,344 parameters" in out and "1.14G MACs" in out


def test_explain_json_has_rows_and_totals(cli):
    code, out, _ = cli("explain", "lenet5.yaml", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["input"] == [1, 28, 28] and data["output"] == [10]
    assert data["totals"]["params"] == 61_706 == sum(r["params"] for r in data["layers"])
    assert data["layers"][0]["shape"] == [6, 28, 28] and data["layers"][0]["rf"] == [5, 5]


def test_explain_wrong_input_is_a_one_line_error_with_the_fix(cli):
    code, out, err = cli("explain", "alexnet", "--input", "3x224x224")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "54.25" in err and "nearest input sizes that fit: 3×227×227" in err


def test_explain_other_input_size_and_channels(cli):
    code, out, _ = cli("explain", "resnet18", "--input", "1x64x64", "--num-classes", "5")
    assert code == 0 and "input 64×64×1" in out and out.rstrip().count("\n") > 50
    assert "output 5" in out


def test_explain_run_directory_uses_its_input_size(cli, digits_run):
    code, out, _ = cli("explain", digits_run)
    assert code == 0 and "input 8×8×1" in out and "output 10" in out


def test_explain_svg_diagram(cli, tmp_path):
    code, out, _ = cli("explain", "lenet5.yaml", "--svg", tmp_path / "lenet.svg")
    assert code == 0 and "wrote" in out
    root = ET.parse(tmp_path / "lenet.svg").getroot()
    ns = "{http://www.w3.org/2000/svg}"
    boxes = root.findall(f"{ns}rect")[1:]  # the first rect is the background
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert len(boxes) == 12  # one per layer call
    assert "28×28×6" in texts and "1×1×120" in texts and any("61,706 parameters" in t for t in texts)


def test_unknown_model_is_a_did_you_mean(cli):
    code, _, err = cli("explain", "alexnt")
    assert code == 2 and "did you mean" in err


def test_visualize_writes_titled_pngs(cli, digits_run, digit_png, tmp_path):
    code, out, err = cli("visualize", digits_run, digit_png, "--out", tmp_path / "vis")
    assert code == 0, err
    for name in PNGS:
        assert f"wrote {tmp_path / 'vis' / name}" in out
        with Image.open(tmp_path / "vis" / name) as im:
            im.load()
            assert im.format == "PNG" and im.width > 100 and im.height > 100
    assert (tmp_path / "vis" / "gradcam.png").stat().st_size > 0


def test_visualize_chosen_layers_and_target(cli, digits_run, digit_png, tmp_path):
    code, _, err = cli(
        "visualize", digits_run, digit_png, "--out", tmp_path, "--layers", "stem.0.0,stage2.1.2", "--target", "3"
    )
    assert code == 0, err
    code, _, err = cli("visualize", digits_run, digit_png, "--out", tmp_path, "--layers", "nope")
    assert code == 2 and "expected layer names" in err and "nope" in err
    code, _, err = cli("visualize", digits_run, digit_png, "--out", tmp_path, "--target", "cat")
    assert code == 2 and "class name or index" in err
