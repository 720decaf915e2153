"""``cnnkit convolve`` and ``cnnkit kernels`` from the command line."""

from __future__ import annotations

import numpy as np
from PIL import Image

MATRIX5 = "1 1 1 0 0; 0 1 1 1 0; 0 0 1 1 1; 0 0 1 1 0; 0 1 1 0 0"


def test_convolve_matrix_prints_the_notes_feature_map(cli):
    code, out, _ = cli("convolve", "--matrix", MATRIX5, "--kernel", "1 0 1; 0 1 0; 1 0 1")
    assert code == 0
    assert out.split("feature map:\n")[1].split() == ["4", "3", "4", "2", "4", "3", "2", "3", "4"]
    assert "(5 + 2·0 − 3)/1 + 1 = 3 -> 3×3" in out
    assert "correlation and true convolution agree" in out


def test_convolve_mode_explains_the_flip(cli):
    code, out, _ = cli("convolve", "--matrix", MATRIX5, "--kernel", "0 0 1; 0 1 1; 1 1 1", "--mode", "convolve")
    assert code == 0
    assert "flipped 180°" in out and "nn.Conv2d" not in out.split("feature map:")[1]
    assert out.split("feature map:\n")[1].split() == ["4", "4", "4", "2", "4", "5", "1", "4", "6"]


def test_convolve_stride_two_and_padding(cli):
    code, out, _ = cli(
        "convolve", "--matrix", "5 2 3 4; 6 7 8 5; 4 5 4 5; 1 0 2 3", "--kernel", "1 0; 1 -1", "--stride", "2"
    )
    assert code == 0 and out.split("feature map:\n")[1].split() == ["4", "6", "5", "3"]
    code, out, _ = cli("convolve", "--matrix", MATRIX5, "--kernel", "edge3", "--padding", "1")
    assert code == 0 and "-> 5×5" in out


def test_non_integer_output_size_is_a_one_line_error(cli):
    six = "; ".join(["1 0 1 0 1 0"] * 6)
    code, out, err = cli("convolve", "--matrix", six, "--kernel", "box_blur", "--stride", "2")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "(6 + 2·0 − 3)/2 + 1 = 2.5" in err and "input size 5 or 7" in err


def test_convolve_image_writes_side_by_side_png(cli, tmp_path):
    a = np.zeros((32, 40), np.uint8)
    a[8:24, 10:30] = 255
    Image.fromarray(a).save(tmp_path / "square.png")
    code, out, _ = cli("convolve", tmp_path / "square.png", "--kernel", "sobel_x", "--out", tmp_path / "o.png")
    assert code == 0 and "-> 32×40" in out
    with Image.open(tmp_path / "o.png") as im:
        assert im.format == "PNG" and im.width > im.height > 100


def test_kernels_lists_every_named_kernel(cli):
    code, out, _ = cli("kernels")
    assert code == 0
    for name in ("identity", "edge1", "edge2", "edge3", "sharpen", "box_blur", "gaussian3", "gaussian5"):
        assert f"{name} (" in out
    assert "unsharp5 (5×5)" in out and "-1/256 ×" in out and "-476" in out
    assert "x_diag" in out and "sobel_y" in out
