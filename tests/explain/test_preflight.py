"""Shape preflight: the layer that does not fit, the arithmetic, and the nearest input sizes that do."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.explain import nearest_fitting, parse_input, preflight

from .conftest import meta_model


def small_net() -> nn.Sequential:
    """conv 3×3 stride 2 then an FC that needs a 3×3×8 map: fits 7×7 and 8×8 inputs."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 3 * 3, 10))


def test_fitting_inputs_return_the_output_shape():
    assert preflight(small_net(), (3, 7, 7)) == (10,)
    assert preflight(small_net(), "3x8x8") == (10,)  # (8 − 3)/2 + 1 = 3.5 floors to 3, as PyTorch does
    assert preflight(meta_model("resnet50"), "3×224×224") == (1000,)
    assert preflight(meta_model("alexnet")) == (1000,)


def test_fc_expecting_another_flattened_size():
    with pytest.raises(CnnkitError) as e:
        preflight(small_net(), (3, 10, 10))
    msg = str(e.value)
    assert "layer 3 (Linear) expects 72 input features" in msg
    assert "8×4×4 = 128 values" in msg and "it needs a 3×3×8 map" in msg
    assert msg.endswith("nearest input sizes that fit: 3×8×8")  # 9 gives 4×4; nothing fits between 11 and 74


def test_map_shrunk_to_nothing():
    net = nn.Sequential(nn.Conv2d(3, 8, 5), nn.MaxPool2d(2), nn.Conv2d(8, 8, 5))
    with pytest.raises(CnnkitError, match=r"layer 2 \(Conv2d\) .*\(2 \+ 2·0 − 5\)/1 \+ 1 = -2.*shrinks to nothing"):
        preflight(net, (3, 8, 8))
    with pytest.raises(CnnkitError, match="nearest input sizes that fit: 3×14×14$"):
        preflight(net, (3, 8, 8))


def test_strict_refuses_non_integer_output_sizes_like_the_conv_lab():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2))
    assert preflight(net, (3, 6, 6)) == (8, 2, 2)
    with pytest.raises(CnnkitError) as e:
        preflight(net, (3, 6, 6), strict=True)
    assert "(6 + 2·0 − 3)/2 + 1 = 2.5" in str(e.value)
    assert "nearest input sizes that fit: 3×5×5 or 3×7×7" in str(e.value)


def test_fixed_size_paper_model_explains_and_points_to_227():
    with pytest.raises(CnnkitError) as e:
        preflight(meta_model("alexnet"), (3, 224, 224))
    assert "(224 − 11)/4 + 1 = 54.25" in str(e.value)
    assert str(e.value).endswith("nearest input sizes that fit: 3×227×227")


def test_spec_model_fc_mismatch_names_the_layer():
    with pytest.raises(CnnkitError) as e:
        preflight(meta_model("lenet5.yaml"), (1, 32, 32))
    assert "layer f6 (fc) of lenet5-spec expects 120 = 120×1×1" in str(e.value)
    assert "120×2×2 = 480" in str(e.value)
    assert str(e.value).endswith("nearest input sizes that fit: 1×31×31")  # 31 -> 15 -> 11 -> 5 -> c5 gives 1×1


def test_wrong_channels_is_not_a_size_problem():
    with pytest.raises(CnnkitError, match="expected 3 input channel"):
        preflight(meta_model("resnet50"), (1, 224, 224))
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(4, 8, 3))
    with pytest.raises(CnnkitError, match=r"layer 1 \(Conv2d\) expects 4 input channels, found 8×8×8$"):
        preflight(net, (3, 10, 10))


def test_nearest_fitting_keeps_the_aspect_offset():
    net = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2))
    assert nearest_fitting(net, (1, 6, 8), strict=True) == [(1, 5, 7), (1, 7, 9)]


def test_weights_are_never_read():
    net = small_net()
    with torch.no_grad():
        net[0].weight.fill_(float("nan"))
    assert preflight(net, (3, 7, 7)) == (10,)


@pytest.mark.parametrize("text", ["224", "3x224", "ax3x3", "0x4x4"])
def test_parse_input_rejects_bad_sizes(text):
    with pytest.raises(CnnkitError, match="C×H×W"):
        parse_input(text)
