"""Per-layer summary: the notes' AlexNet shapes, MACs against FlopCounterMode, receptive fields."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import cnnkit
from cnnkit.explain import format_table, summarize
from cnnkit.explain.summary import format_shape
from cnnkit.models import count_parameters

from .conftest import meta_model

# The notes' AlexNet layer list: CONV1, POOL1, NORM1, CONV2, POOL2, NORM2, CONV3, CONV4, CONV5, POOL3, FC6-8
ALEXNET_NOTES = [
    "55×55×96", "27×27×96", "27×27×96", "27×27×256", "13×13×256", "13×13×256",
    "13×13×384", "13×13×384", "13×13×256", "6×6×256", "4096", "4096", "1000",
]  # fmt: skip
KEY_LAYERS = ("Conv2d", "MaxPool2d", "LocalResponseNorm", "Linear")


def reference_macs(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Independent count: FlopCounterMode's conv + matmul FLOPs, halved."""
    x = torch.zeros(1, *shape, device="meta")
    was = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    model.train(was)
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("name", ["alexnet", "alexnet.yaml"])
def test_alexnet_shapes_are_the_notes_list(name):
    s = summarize(meta_model(name))
    assert s.input == (3, 227, 227)
    assert [format_shape(r.shape) for r in s.rows if r.kind in KEY_LAYERS] == ALEXNET_NOTES
    conv1 = s.rows[0]
    assert conv1.params == 96 * 11 * 11 * 3 + 96 == 34_944
    assert conv1.macs == 11 * 11 * 3 * 96 * 55 * 55
    assert conv1.memory == 55 * 55 * 96 * 4
    assert (conv1.rf, conv1.jump, conv1.start) == ((11, 11), (4, 4), (5, 5))
    pool1 = s.rows[2]
    assert (pool1.rf, pool1.jump) == ((19, 19), (8, 8))
    assert s.params == sum(r.params for r in s.rows) == 62_378_344


@pytest.mark.parametrize(
    "name", ["lenet5", "smallcnn", "alexnet", "resnet50", "mobilenet_v2", "googlenet", "lenet5.yaml"]
)
def test_macs_match_flop_counter(name):
    model = meta_model(name)
    s = summarize(model)
    assert s.macs == reference_macs(model, model.default_input) > 0
    # every parameter is attributed to exactly one row of the table
    assert sum(r.params for r in s.rows) == count_parameters(model)


@pytest.mark.slow
def test_every_registered_model_matches_flop_counter():
    names = cnnkit.list_models()
    assert names
    for name in names:
        model = meta_model(name)
        s = summarize(model)
        assert s.macs == reference_macs(model, model.default_input), name
        assert sum(r.params for r in s.rows) == count_parameters(model), name


@pytest.mark.parametrize("name, published", [("vgg16", 15.5e9), ("resnet50", 4.1e9), ("mobilenet_v2", 0.30e9)])
def test_totals_match_published_figures(name, published):
    s = summarize(meta_model(name), (3, 224, 224))
    assert s.macs == pytest.approx(published, rel=0.02)


def test_vgg16_receptive_fields():
    s = summarize(meta_model("vgg16"))
    convs = [r for r in s.rows if r.kind == "Conv2d"]
    assert [c.rf[0] for c in convs[:2]] == [3, 5]  # two stacked 3×3 convs see 5×5
    assert convs[-1].rf == (196, 196) and convs[-1].jump == (16, 16)  # conv5_3
    pool5 = [r for r in s.rows if r.kind == "MaxPool2d"][-1]
    assert pool5.rf == (212, 212) and format_shape(pool5.shape) == "7×7×512"


def test_three_stacked_3x3_convs_see_7x7_with_27_weights_per_channel_pair():
    stack = nn.Sequential(*(nn.Conv2d(1, 1, 3, bias=False) for _ in range(3)))
    s = summarize(stack, (1, 9, 9))
    assert [r.rf for r in s.rows] == [(3, 3), (5, 5), (7, 7)]
    assert s.params == 27 and summarize(nn.Conv2d(1, 1, 7, bias=False), (1, 9, 9)).params == 49
    assert s.rows[-1].shape == (1, 3, 3)


def test_shared_module_gives_a_row_per_call_and_counts_params_once():
    s = summarize(meta_model("resnet18"))
    relu_rows = [r for r in s.rows if r.name == "layer1.0.relu"]
    assert len(relu_rows) == 2  # torchvision reuses the block's ReLU
    assert sum(r.params for r in s.rows) == s.params


class Functional(nn.Module):
    """A conv done with F.conv2d outside any leaf, plus a residual add."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(4, 3, 3, 3))
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(F.conv2d(x, self.weight, padding=1) + x.mean(1, keepdim=True))


def test_functional_convs_are_counted_and_fields_pass_through_adds():
    s = summarize(Functional(), (3, 10, 10))
    func = [r for r in s.rows if r.kind == "functional"]
    assert func and func[0].macs == 3 * 3 * 3 * 4 * 10 * 10
    assert s.macs == reference_macs(Functional(), (3, 10, 10))
    assert s.rows[-1].rf == (3, 3)  # the add keeps the conv branch's field


def test_real_model_is_untouched():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2 * 6 * 6, 3))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s = summarize(model, (1, 8, 8))
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(p.is_meta for p in model.parameters())
    assert s.output == (3,) and s.rows[-1].macs == 72 * 3


def test_table_has_totals_and_rounding_notes():
    text = format_table(summarize(meta_model("resnet50")))
    assert "total: 25,557,032 parameters" in text
    assert "4.09G MACs" in text
    assert "* conv1: rows (224 + 2·3 − 7)/2 + 1 = 112.5 -> 112" in text
