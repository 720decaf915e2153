"""``inference_copy``: BatchNorm folded into the conv before it wherever the autograd graph shows the BatchNorm
alone reads that conv's output, the same outputs as the model, and the model itself untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnkit.models import create_model
from cnnkit.runtime import conv_bn_pairs, inference_copy


def settled(model: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    """``model`` with running statistics of its own activations (fresh BatchNorms hold mean 0, variance 1, which
    folding would turn into a near-identity), back in eval mode."""
    torch.manual_seed(0)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, *shape))
    return model.eval()


def batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def same_outputs(model: nn.Module, fast: nn.Module, x: torch.Tensor) -> None:
    """The same logits and (zoo models, whose heads may start at zero) the same feature maps, to float rounding."""
    xc = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        pairs = [(fast(xc), model(x))]
        if hasattr(model, "forward_features"):
            pairs.append((fast.forward_features(xc), model.forward_features(x)))
    for got, want in pairs:
        assert got.shape == want.shape and want.abs().max() > 0
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


@pytest.mark.parametrize(
    "name, shape",
    [
        ("smallcnn", (1, 28, 28)),  # conv-BN-ReLU Sequentials
        ("mobilenet_v2", (3, 64, 64)),  # torchvision's Conv2dNormActivation, depthwise convs
        ("efficientnet_lite0", (3, 64, 64)),  # attributes (_depthwise_conv, _bn1), TF-SAME Conv2dSame
        ("resnet18", (3, 64, 64)),  # attributes in blocks with skip connections, downsample Sequentials
    ],
)
def test_every_conv_bn_pair_of_zoo_models_is_folded_with_the_same_outputs(name, shape):
    model = settled(create_model(name, num_classes=7, in_chans=shape[0]), shape)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(4, *shape)
    fast = inference_copy(model, x[:1])
    assert batchnorms(model) > 0 and batchnorms(fast) == 0
    assert next(fast.parameters()).is_contiguous(memory_format=torch.channels_last) or shape[0] == 1
    same_outputs(model, fast, x)
    after = model.state_dict()  # the model as trained is left as it was: explain and export show its layers
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


def test_densenet_keeps_the_batchnorms_that_read_a_concatenation():
    shape = (3, 64, 64)
    model = settled(create_model("densenet121", num_classes=5), shape)
    fast = inference_copy(model, torch.zeros(1, *shape))
    # 121 BNs. Folded: the stem's norm0 after conv0, and each of the 58 dense layers' norm2 after its 1×1 conv.
    # Kept: each dense layer's norm1, the 3 transitions' norm and norm5, which read concatenations.
    assert batchnorms(model) == 121 and batchnorms(fast) == 58 + 3 + 1
    same_outputs(model, fast, torch.randn(2, *shape))


def test_fastcnn_keeps_the_batchnorms_behind_a_max_pool():
    """Folding a BN into the conv before a max pool would be wrong where the BN's scale is negative (max and a
    negative scale do not commute): fastcnn's pool-first blocks keep those BNs and fold the rest."""
    shape = (1, 28, 28)
    model = settled(create_model("fastcnn"), shape)
    with torch.no_grad():
        model.blocks[0][2].weight[:5] *= -1  # negative scales: a wrong fold would change the outputs
    fast = inference_copy(model, torch.zeros(1, *shape))
    # 7 BNs: the stem's and each block's second are folded; each block's first reads a max pool and is kept.
    assert batchnorms(model) == 7 and batchnorms(fast) == 3
    assert all(isinstance(fast.blocks[i][2], nn.BatchNorm2d) for i in range(3))
    same_outputs(model, fast, torch.randn(4, *shape))


class Net(nn.Module):
    """Conv-BN pairs that may not be folded: the conv's output also skips past its BN, a conv and a BN called twice,
    a ReLU between conv and BN, a BN without running statistics; and one pair that may, registered BN first."""

    def __init__(self) -> None:
        super().__init__()
        self.bn_ok = nn.BatchNorm2d(4)  # registered before its conv: attribute order says nothing
        self.conv_ok = nn.Conv2d(3, 4, 3, padding=1)
        self.conv_skip, self.bn_skip = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv_twice, self.bn_twice = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)
        self.conv_relu, self.bn_relu = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)
        self.conv_nostats, self.bn_nostats = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4, track_running_stats=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn_ok(self.conv_ok(x))
        y = self.conv_skip(x)
        x = self.bn_skip(y) + y
        x = self.bn_twice(self.conv_twice(x)) + self.bn_twice(self.conv_twice(x.flip(-1)))
        x = self.bn_relu(torch.relu(self.conv_relu(x)))
        return self.bn_nostats(self.conv_nostats(x))


def test_only_a_bn_that_alone_reads_a_conv_called_once_is_folded():
    model = settled(Net(), (3, 8, 8))
    x = torch.randn(2, 3, 8, 8)
    assert conv_bn_pairs(model, x[:1]) == [("conv_ok", "bn_ok")]
    fast = inference_copy(model, x[:1])
    assert isinstance(fast.bn_ok, nn.Identity) and fast.conv_ok.bias is not None
    assert all(isinstance(getattr(fast, f"bn_{k}"), nn.BatchNorm2d) for k in ("skip", "twice", "relu", "nostats"))
    model.train()  # the copy is made in eval mode and the model keeps its own mode
    fast = inference_copy(model, x[:1])
    assert model.training and not fast.training and isinstance(model.bn_ok, nn.BatchNorm2d)
    assert conv_bn_pairs(model, x[:1]) == [("conv_ok", "bn_ok")] and model.training  # found in eval mode, mode kept
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-5)


class StdConv(nn.Conv2d):
    """A weight-standardising conv (as in BiT): it rescales whatever weight it holds, so a fold would be undone."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)
        return self._conv_forward(x, w, self.bias)


def test_a_conv_with_a_forward_of_its_own_is_not_folded_unless_it_says_so():
    layers = [StdConv(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)]
    model = settled(nn.Sequential(*layers), (3, 8, 8))
    x = torch.randn(2, 3, 8, 8)
    assert conv_bn_pairs(model, x[:1]) == [("2", "3")]
    same_outputs(model, inference_copy(model, x[:1]), x)
    StdConv.folds_batchnorm = True  # what Conv2dSame declares: then it is folded (wrongly, for this one)
    try:
        assert conv_bn_pairs(model, x[:1]) == [("0", "1"), ("2", "3")]
    finally:
        del StdConv.folds_batchnorm
