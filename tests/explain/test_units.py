"""What each unit learned (Zeiler & Fergus): receptive-field crops, deconvnet projections, top-k search, the command.

The projections are checked against results worked out by hand on tiny networks whose weights are set here.
"""

from __future__ import annotations

import argparse

import pytest
import torch
from torch import nn

import cnnkit
from cnnkit.errors import CnnkitError
from cnnkit.explain.units import (
    LayerOutput,
    find_layer,
    find_units,
    merge_topk,
    patch,
    plot_units,
    project,
    receptive_box,
    top_units,
)
from cnnkit.models.smallcnn import SmallCNN

from .conftest import meta_model


def conv(weight: list[list[float]]) -> nn.Conv2d:
    """A 1→1 channel conv without bias whose 2-D kernel is ``weight``."""
    w = torch.tensor(weight)
    c = nn.Conv2d(1, 1, tuple(w.shape), bias=False)
    with torch.no_grad():
        c.weight.copy_(w[None, None])
    return c


def unit_projection(model: nn.Module, layer: str, x: torch.Tensor, method: str = "deconv") -> torch.Tensor:
    """Projection of unit (channel 0, row 0, column 0) of ``layer`` for one image x: Tensor[1, 1, H, W]."""
    found = find_layer(model.eval(), layer, tuple(x.shape[1:]))
    zero = torch.zeros(1, dtype=torch.long)
    return project(model, found, x, 0, zero, zero, method)[0, 0]


# ---- the deconvnet projection, by hand ---------------------------------------------------------------------------
def test_deconv_unpools_by_the_switch_and_filters_with_the_transposed_kernel():
    """conv 2×2 → ReLU → max pool 2×2 on a 3×3 image; project the pooled unit.

    Forward: conv (cross-correlation with K = [[1, −1], [2, 0]]) gives [[−1, 8], [1, 2]]; ReLU [[0, 8], [1, 2]];
    the max pool picks 8, at (0, 1): the switch. Backward: a 1 at the switch, ReLU(1) = 1, then the transposed
    filter puts 1·K at rows 0–1, columns 1–2 of the image: [[0, 1, −1], [0, 2, 0], [0, 0, 0]].
    """
    x = torch.tensor([[1.0, 2, 0], [0, 3, 1], [2, 0, 1]])[None, None]
    model = nn.Sequential()
    model.add_module("conv", conv([[1, -1], [2, 0]]))
    model.add_module("relu", nn.ReLU())
    model.add_module("pool", nn.MaxPool2d(2))
    expected = torch.tensor([[0.0, 1, -1], [0, 2, 0], [0, 0, 0]])
    assert torch.equal(unit_projection(model, "pool", x), expected)


def deconv_relu_model() -> tuple[nn.Sequential, torch.Tensor]:
    """conv K = [[1, 2], [0, −1]] → ReLU → conv V = [[1, −1], [0.5, 2]] on a 3×3 image, down to one unit.

    The first conv's map is A = [[−1, 4], [4, 1]]: at (0, 0) the forward ReLU is off while V sends back +1;
    at (0, 1) it is on while V sends back −1.
    """
    model = nn.Sequential(conv([[1, 2], [0, -1]]), nn.ReLU(), conv([[1, -1], [0.5, 2]]))
    x = torch.tensor([[1.0, 0, 2], [0, 2, 0], [3, 0, 1]])[None, None]
    return model, x


def test_deconv_rectifies_the_backward_signal_whatever_the_forward_sign():
    """ZF: the signal coming back, V, goes through a ReLU of its own: S = ReLU(V) = [[1, 0], [0.5, 2]] (the −1 is
    dropped though A was positive there; the +1 passes though A was negative). Then Σ S[p]·K placed at p:

        1·K at (0, 0):   [[1, 2, 0], [0, −1, 0], [0, 0, 0]]
        0.5·K at (1, 0): [[0, 0, 0], [0.5, 1, 0], [0, −0.5, 0]]
        2·K at (1, 1):   [[0, 0, 0], [0, 2, 4], [0, 0, −2]]
    """
    model, x = deconv_relu_model()
    expected = torch.tensor([[1.0, 2, 0], [0.5, 2, 4], [0, -0.5, -2]])
    assert torch.equal(unit_projection(model, "2", x), expected)


def test_guided_backprop_also_masks_by_the_forward_pass():
    """Guided: S = ReLU(V · [A > 0]) = ReLU([[0, −1], [0.5, 2]]) = [[0, 0], [0.5, 2]], so only the last two terms."""
    model, x = deconv_relu_model()
    expected = torch.tensor([[0.0, 0, 0], [0.5, 3, 4], [0, -0.5, -2]])
    assert torch.equal(unit_projection(model, "2", x, method="guided"), expected)


def test_projection_is_of_each_images_own_unit():
    """A batch projects one unit per image; the result equals projecting each image alone."""
    model = SmallCNN(num_classes=3, widths=(4, 6, 8)).eval()
    layer = find_layer(model, "stage1.1", (1, 12, 12))
    x = torch.randn(3, 1, 12, 12)
    rows, cols = torch.tensor([0, 2, 5]), torch.tensor([1, 3, 0])
    both = project(model, layer, x, 2, rows, cols)
    for n in range(3):
        alone = project(model, layer, x[n : n + 1], 2, rows[n : n + 1], cols[n : n + 1])
        assert torch.allclose(both[n], alone[0], atol=1e-6)


# ---- receptive fields ---------------------------------------------------------------------------------------------
def changed_pixels(prefix: LayerOutput, size: int, unit: tuple[int, int, int], steps: tuple[float, ...]) -> set:
    """Input pixels whose change, one at a time by each of ``steps`` on a random 0–1 image, moves ``unit``."""
    c, i, j = unit
    moved = set()
    gen = torch.Generator().manual_seed(0)
    for step in steps:
        batch = torch.rand(1, 1, size, size, generator=gen).repeat(size * size + 1, 1, 1, 1)
        for p in range(size * size):
            batch[p + 1, :, p // size, p % size] += step
        with torch.no_grad():
            a = prefix(batch)[:, c, i, j]
        moved |= {divmod(p, size) for p in range(size * size) if abs(float(a[p + 1] - a[0])) > 1e-6}
    return moved


@pytest.mark.parametrize(
    ("name", "layer", "size", "unit"),
    [
        ("smallcnn", "stem.2", 20, (1, 4, 7)),  # after a 2×2 max pool: a 6-pixel field, centred between pixels
        ("smallcnn", "stage1.1", 20, (3, 0, 0)),  # a 14-pixel field clipped by the corner
        ("smallcnn", "stage1.1", 20, (0, 5, 6)),
        ("lenet5.yaml", "c3", 28, (5, 3, 4)),  # a layer-list spec: conv 5×5, avg pool, conv 5×5, tanh
    ],
)
def test_receptive_field_crop_is_exactly_the_region_that_moves_the_unit(name, layer, size, unit):
    """Outside the crop no pixel moves the unit, whatever the weights. Inside every pixel can: shown with random
    weights for the tanh network, and for the ReLU network with positive weights on a positive image (every ReLU
    open, so no path is cut) and steps large enough to win any max pool."""
    torch.manual_seed(0)
    model = SmallCNN(num_classes=3, widths=(4, 6, 8)) if name == "smallcnn" else cnnkit.create_model(name)
    model.eval()
    found = find_layer(model, layer, (1, size, size))
    top, bottom, left, right = receptive_box(found.field, unit[1], unit[2], (size, size))
    inside = {(r, c) for r in range(top, bottom) for c in range(left, right)}
    prefix = LayerOutput(model, found)
    moved = changed_pixels(prefix, size, unit, (3.0, -3.0, 0.5, -0.5))
    if name == "smallcnn":
        assert moved and moved <= inside
        with torch.no_grad():
            for p in model.parameters():
                p.abs_()
        moved = changed_pixels(prefix, size, unit, (100.0,))
    assert moved == inside


def test_receptive_box_and_patch_arithmetic():
    layer = find_layer(SmallCNN(num_classes=3), "stem.2", (1, 28, 28))  # rf 6, jump 2, start 0.5
    assert layer.rf == (6, 6) and receptive_box(layer.field, 3, 5) == (4, 10, 8, 14)
    assert receptive_box(layer.field, 0, 13, (28, 28)) == (0, 4, 24, 28)
    image = torch.arange(28 * 28, dtype=torch.float).view(1, 28, 28)
    p = patch(image, layer.field, 0, 13)  # rows −2…3, columns 24…29: the first two rows and last two columns outside
    assert p.shape == (1, 6, 6) and p[0, :2].isnan().all() and p[0, :, 4:].isnan().all()
    assert torch.equal(p[0, 2:, :4], image[0, 0:4, 24:28])


@pytest.mark.parametrize("name", [*cnnkit.list_models(), "lenet5.yaml"])
def test_every_registered_model_has_unit_layers(name):
    """On the meta device (no weights): the first conv's units see a kernel-sized field with the conv's stride as
    jump; the last conv's field is at least as wide."""
    model = meta_model(name, num_classes=5)
    modules = dict(model.named_modules())
    first = find_layer(model, _first_conv(model))
    conv = modules[first.name]
    assert first.rf == tuple(d * (k - 1) + 1 for k, d in zip(conv.kernel_size, conv.dilation))
    assert first.field.j == tuple(conv.stride)
    last = find_layer(model, [n for n, m in modules.items() if isinstance(m, nn.Conv2d)][-1])
    assert last.rf[0] >= first.rf[0] and len(last.shape) == 3


def _first_conv(model: nn.Module) -> str:
    return next(n for n, m in model.named_modules() if isinstance(m, nn.Conv2d))


def test_a_module_called_twice_is_read_at_its_last_call():
    """torchvision's BasicBlock runs its ReLU twice; the layer is its last call, the block's output."""
    model = cnnkit.create_model("resnet18", num_classes=3).eval()
    relu, block = find_layer(model, "layer1.0.relu", (3, 32, 32)), find_layer(model, "layer1.0", (3, 32, 32))
    assert relu.calls == 2 and relu.field == block.field
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(LayerOutput(model, relu)(x), LayerOutput(model, block)(x))
    proj = project(model, relu, x, 1, torch.tensor([3, 4]), torch.tensor([2, 5]))
    assert proj.shape == (2, 3, 32, 32) and proj.abs().sum() > 0


# ---- the top-k search ----------------------------------------------------------------------------------------------
def test_top_units_equal_brute_force():
    torch.manual_seed(1)
    model = SmallCNN(num_classes=3, widths=(4, 6, 8)).eval()
    images = torch.randint(0, 256, (41, 1, 12, 12), dtype=torch.uint8)
    normalize = lambda b: b.float() / 255 - 0.5  # noqa: E731
    layer = find_layer(model, "stage1.0", (1, 12, 12))
    top = top_units(model, layer, images, normalize, k=5, batch_size=7, progress=False)
    with torch.no_grad():
        acts = LayerOutput(model, layer)(normalize(images))  # [41, 6, 6, 6]
    peak = acts.flatten(2).amax(2)  # [N, K]: each image's strongest unit per channel
    values, image = peak.T.sort(1, descending=True)
    assert top.values.shape == (6, 5) and top.count == 41
    assert torch.allclose(top.values, values[:, :5]) and torch.equal(top.image, image[:, :5])
    for c in range(6):
        assert torch.allclose(acts[top.image[c], c, top.row[c], top.col[c]], top.values[c])
    assert torch.allclose(top.mean, peak.mean(0))
    assert top.most_active(2) == peak.mean(0).argsort(descending=True)[:2].tolist()


def test_merge_topk_keeps_k_per_row():
    best, keys = torch.tensor([[5.0, 1.0]]), torch.tensor([[50, 10]])
    v, k = merge_topk(best, keys, torch.tensor([[3.0, 7.0, 0.0]]), torch.tensor([[30, 70, 0]]), k=3)
    assert v.tolist() == [[7.0, 5.0, 3.0]] and k.tolist() == [[70, 50, 30]]


# ---- bad input -----------------------------------------------------------------------------------------------------
def test_unknown_layer_lists_the_valid_ones_with_a_did_you_mean():
    with pytest.raises(CnnkitError, match=r"did you mean stage1\.1.*layers with spatial maps: stem\.0\.0") as e:
        find_layer(SmallCNN(num_classes=3), "stage1.11")
    assert "\n" not in str(e.value)


def test_a_linear_layer_has_no_spatial_map():
    with pytest.raises(CnnkitError, match=r"fc \(Linear\) whose output is Tensor\[N, 3\]") as e:
        find_layer(SmallCNN(num_classes=3), "fc")
    assert "\n" not in str(e.value)


def test_a_spec_layer_is_found_by_its_own_name():
    assert find_layer(cnnkit.create_model("lenet5.yaml"), "c3").name == "features.c3"


# ---- the figure and the command --------------------------------------------------------------------------------------
def test_find_units_and_plot(tmp_path):
    torch.manual_seed(2)
    model = SmallCNN(num_classes=3, widths=(4, 6, 8)).eval()
    images = torch.randint(0, 256, (20, 1, 16, 16), dtype=torch.uint8)
    layer, top, views = find_units(model, "stem.2", images, lambda b: b.float() / 255, 3, k=4, progress=False)
    assert [v.channel for v in views] == top.most_active(3)
    assert views[0].patches.shape == views[0].projections.shape == (4, 1, 6, 6)
    path = plot_units(layer, views, tmp_path / "units.png", title="test — ")
    assert path.stat().st_size > 1000


def units_parser() -> argparse.ArgumentParser:
    from cnnkit.cli.units import add_units_arguments

    parser = argparse.ArgumentParser(prog="cnnkit visualize units")
    add_units_arguments(parser)
    return parser


def test_command_writes_the_figure(digits_run, tmp_path, capsys):
    out = tmp_path / "units.png"
    args = units_parser().parse_args(
        [str(digits_run), "--layer", "stem.1", "--channels", "2", "--top", "4", "--out", str(out), "--quiet"]
    )
    assert args.func(args) == 0
    assert out.stat().st_size > 1000 and f"wrote {out}" in capsys.readouterr().out


def test_command_bad_layer_is_one_line(digits_run):
    args = units_parser().parse_args([str(digits_run), "--layer", "stem.7", "--quiet"])
    with pytest.raises(CnnkitError, match="did you mean"):
        args.func(args)
