"""The convolution lab reproduces the lecture notes' worked examples exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnkit.conv import KERNELS, conv_weights, filter2d, get_kernel, output_size, parse_matrix, receptive_field
from cnnkit.errors import CnnkitError

IMAGE5 = [[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]]
IMAGE4 = [[5, 2, 3, 4], [6, 7, 8, 5], [4, 5, 4, 5], [1, 0, 2, 3]]


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def test_notes_x_filter_feature_map():
    out = filter2d(t(IMAGE5), t([[1, 0, 1], [0, 1, 0], [1, 0, 1]]))
    assert out.tolist() == [[4, 3, 4], [2, 4, 3], [2, 3, 4]]


def test_notes_second_filter_feature_map_and_its_flip():
    k = t([[0, 0, 1], [0, 1, 1], [1, 1, 1]])
    assert filter2d(t(IMAGE5), k).tolist() == [[4, 4, 4], [3, 5, 4], [4, 5, 3]]
    # true convolution flips the kernel 180°: a different map for this asymmetric kernel
    assert filter2d(t(IMAGE5), k, mode="convolve").tolist() == [[4, 4, 4], [2, 4, 5], [1, 4, 6]]
    assert torch.equal(filter2d(t(IMAGE5), k, mode="convolve"), filter2d(t(IMAGE5), k.flip(0, 1)))


def test_zero_padding_one_keeps_five_by_five():
    out = filter2d(t(IMAGE5), t([[1, 0, 1], [0, 1, 0], [1, 0, 1]]), padding=1)
    assert out.shape == (5, 5)
    assert out[1:4, 1:4].tolist() == [[4, 3, 4], [2, 4, 3], [2, 3, 4]]  # the interior is the unpadded map
    assert out[0].tolist() == [2, 2, 3, 1, 1]  # top row: window centred on the border sees zeros


def test_four_by_four_stride_one_and_two():
    k = t([[1, 0], [1, -1]])
    s1 = filter2d(t(IMAGE4), k, stride=1)
    assert s1[0, :2].tolist() == [4, 1]  # as on the slide
    assert s1.tolist() == [[4, 1, 6], [5, 8, 7], [5, 3, 3]]
    assert filter2d(t(IMAGE4), k, stride=2).tolist() == [[4, 6], [5, 3]]


def test_matches_nn_conv2d_on_rgb_channels():
    x = torch.rand(3, 9, 9, dtype=torch.float64)
    conv = nn.Conv2d(3, 3, 3, stride=2, padding=1, groups=3, bias=False).double()
    k = KERNELS["sobel_x"].tensor()
    conv.weight.data[:] = k
    assert torch.allclose(filter2d(x, k, stride=2, padding=1), conv(x[None])[0].detach())


def test_output_size_formula_and_non_integer_error():
    assert output_size(5, 3) == 3
    assert output_size(5, 3, padding=1) == 5
    assert output_size(227, 11, stride=4) == 55
    assert output_size(4, 2, stride=2) == 2
    with pytest.raises(CnnkitError) as e:
        output_size(6, 3, stride=2)
    msg = str(e.value)
    assert "(6 + 2·0 − 3)/2 + 1 = 2.5" in msg
    assert "stride 1 ((6 + 2·0 − 3)/1 + 1 = 4)" in msg and "stride 3" in msg
    assert "input size 5 or 7" in msg


def test_map_shrinking_to_nothing_is_an_error_with_a_fix():
    with pytest.raises(CnnkitError, match=r"shrinks to nothing.*padding 1"):
        output_size(2, 3)


def test_filter2d_refuses_a_non_integer_output():
    with pytest.raises(CnnkitError, match="2.5"):
        filter2d(torch.zeros(6, 6), torch.ones(3, 3), stride=2)


def test_weight_counts_and_receptive_fields():
    assert conv_weights(5, 7, 3) == 735
    assert conv_weights(96, 11, 3, bias=True) == 34_944  # AlexNet conv1
    assert receptive_field([3, 3, 3]) == 7
    assert receptive_field([3, 3]) == 5
    # the notes: three stacked 3×3 convs see what one 7×7 sees, with 27 weights per channel pair instead of 49
    assert 3 * conv_weights(1, 3, 1) == 27 and conv_weights(1, 7, 1) == 49
    assert 3 * conv_weights(64, 3, 64) < conv_weights(64, 7, 64)
    assert receptive_field([11, 3], [4, 2]) == 19  # AlexNet conv1 + pool1


SUMS = {"identity": 1, "edge1": 0, "edge2": 0, "edge3": 0, "sharpen": 1, "box_blur": 1, "gaussian3": 1}
SUMS |= {"gaussian5": 1, "unsharp5": 1, "sobel_x": 0, "sobel_y": 0, "x_diag": -3, "x_center": 1, "x_antidiag": -3}


@pytest.mark.parametrize("name, total", SUMS.items())
def test_kernel_sums(name, total):
    assert KERNELS[name].tensor().sum().item() == pytest.approx(total)


def test_unsharp_is_twice_identity_minus_gaussian():
    gauss = KERNELS["gaussian5"].tensor()
    ident = torch.zeros(5, 5, dtype=torch.float64)
    ident[2, 2] = 1
    assert torch.allclose(KERNELS["unsharp5"].tensor(), 2 * ident - gauss)
    assert KERNELS["unsharp5"].values[2][2] == -476


def test_named_kernels_act_as_described():
    x = torch.rand(8, 8, dtype=torch.float64)
    assert torch.allclose(filter2d(x, get_kernel("identity"), padding=1), x)
    flat = torch.full((6, 6), 0.7, dtype=torch.float64)
    for name in ("box_blur", "gaussian3", "gaussian5", "sharpen", "unsharp5"):
        assert torch.allclose(filter2d(flat, get_kernel(name)), torch.tensor(0.7, dtype=torch.float64))
    for name in ("edge1", "edge2", "edge3", "sobel_x", "sobel_y"):
        assert torch.allclose(filter2d(flat, get_kernel(name)), torch.tensor(0.0, dtype=torch.float64))
    ramp = torch.arange(6, dtype=torch.float64).repeat(6, 1)  # brightness grows to the right
    assert filter2d(ramp, get_kernel("sobel_x")).unique().tolist() == [8.0]
    assert filter2d(ramp, get_kernel("sobel_y")).unique().tolist() == [0.0]


def test_x_detectors_fire_on_their_stroke():
    diag = torch.eye(3, dtype=torch.float64) * 2 - 1  # +1 on the \ diagonal, −1 elsewhere
    scores = {n: filter2d(diag, get_kernel(n)).item() for n in ("x_diag", "x_center", "x_antidiag")}
    assert scores["x_diag"] == 9 and max(scores, key=scores.get) == "x_diag"


def test_parse_matrix_and_bad_input():
    assert parse_matrix("1 2; 3 4").tolist() == [[1, 2], [3, 4]]
    assert parse_matrix("1/2, 1\n0 -1").tolist() == [[0.5, 1], [0, -1]]
    with pytest.raises(CnnkitError, match="rectangular"):
        parse_matrix("1 2; 3")
    with pytest.raises(CnnkitError, match="did you mean sharpen"):
        get_kernel("sharpn")
