"""Grad-CAM and occlusion on a model whose answer is known: evidence = a bright square."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnkit
from cnnkit.explain.visualize import capture, default_layers, first_conv, grad_cam, occlusion


def bright_square_model() -> nn.Sequential:
    """Class 0 score = mean brightness, class 1 score = −mean brightness (a 1×1 conv, ReLU, global pool, fc)."""
    conv = nn.Conv2d(1, 2, 1)
    fc = nn.Linear(2, 2)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 0.0]).view(2, 1, 1, 1))
        conv.bias.zero_()
        fc.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
        fc.bias.zero_()
    return nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc).eval()


def square_image() -> torch.Tensor:
    x = torch.zeros(1, 1, 12, 12)
    x[..., 2:6, 7:11] = 1.0  # bright square, rows 2–5, columns 7–10
    return x


def test_grad_cam_lights_up_the_evidence():
    model, x = bright_square_model(), square_image()
    cam, target = grad_cam(model, x)
    assert target == 0 and cam.shape == (12, 12)
    assert cam.max() == 1.0 and cam[2:6, 7:11].min() > 0.99
    assert cam[8:, :4].max() == 0  # far from the square: no evidence
    assert all(p.grad is None for p in model.parameters())  # gradients cleaned up


def test_occlusion_drops_where_the_evidence_is():
    model, x = bright_square_model(), square_image()
    probs, base = occlusion(model, x, target=0, patch=4, stride=2, batch_size=5)
    assert probs.shape == (12, 12)
    assert base > 0.5
    inside, outside = probs[2:6, 7:11].mean(), probs[8:, :4].mean()
    assert inside < outside and abs(float(outside) - base) < 1e-6


def test_layers_and_capture():
    model, x = bright_square_model(), square_image()
    assert first_conv(model)[0] == "0"
    assert default_layers(model, x) == ["0", "1"]  # map-producing layers: conv, ReLU (pools skipped)
    maps = capture(model, x, ["1"])
    assert maps["1"].shape == (2, 12, 12) and maps["1"][0].sum() == 16
    assert model(x).shape == (1, 2)  # hooks removed, output unchanged


def test_grad_cam_uses_the_last_call_of_a_shared_module():
    torch.manual_seed(0)
    model = cnnkit.create_model("resnet18", num_classes=4).eval()
    x = torch.randn(1, 3, 64, 64)
    assert default_layers(model, x)[-1] == "layer4.1.relu"  # torchvision's block ReLU runs twice
    cam, target = grad_cam(model, x, target=2, layer="layer4.1.relu")
    with torch.no_grad():
        a = model.forward_features(x)  # [1, 512, 2, 2]: the block's last ReLU output
    alpha = model.fc.weight[2].detach() / (a.shape[2] * a.shape[3])  # ∂y/∂A through global average pooling
    ref = torch.relu((alpha.view(1, -1, 1, 1) * a).sum(1, keepdim=True))
    ref = torch.nn.functional.interpolate(ref, size=(64, 64), mode="bilinear", align_corners=False)[0, 0]
    assert target == 2 and torch.allclose(cam, ref / ref.max(), atol=1e-5)


def grad_cam_by_hooks(model: nn.Module, x: torch.Tensor, target: int, layer: str) -> torch.Tensor:
    """cnnkit's hand-written Grad-CAM before it moved onto Captum: the reference the Captum version must match."""
    module = dict(model.named_modules())[layer]
    acts: list[torch.Tensor] = []
    grads: dict[int, torch.Tensor] = {}

    def keep(m: nn.Module, a: tuple, out: torch.Tensor) -> None:  # each call of a module that runs twice
        i = len(acts)
        acts.append(out)
        out.register_hook(lambda g: grads.__setitem__(i, g))

    handle = module.register_forward_hook(keep)
    try:
        model(x.detach().requires_grad_(True))[0, target].backward()
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
    last = len(acts) - 1  # the module's last call is the map the rest of the network reads
    weights = grads[last].mean(dim=(2, 3), keepdim=True)  # [1, K, 1, 1]: α_k
    cam = torch.relu((weights * acts[last].detach()).sum(1, keepdim=True))  # [1, 1, h, w]
    cam = torch.nn.functional.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    return cam / cam.max() if cam.max() > 0 else cam


@pytest.mark.parametrize(("name", "shape"), [("smallcnn", (1, 28, 28)), ("resnet18", (3, 64, 64))])
def test_grad_cam_on_captum_equals_the_hand_written_one(name, shape):
    torch.manual_seed(0)
    model = cnnkit.create_model(name, num_classes=4).eval()
    x = torch.randn(1, *shape)
    for layer in default_layers(model, x):
        for target in range(4):
            cam, _ = grad_cam(model, x, target, layer)
            assert torch.allclose(cam, grad_cam_by_hooks(model, x, target, layer), atol=1e-6), (layer, target)


def test_occlusion_agrees_with_captum_where_the_windows_tile_the_image():
    """Captum's Occlusion gives p(x) − mean p(occluded); cnnkit's keeps mean p(occluded). With windows that tile
    the image (12 − 4 is a multiple of 2) they are the same map; cnnkit also covers the border when they don't."""
    from captum.attr import Occlusion

    model, x = bright_square_model(), square_image()
    probs, base = occlusion(model, x, target=0, patch=4, stride=2)
    with torch.no_grad():
        drop = Occlusion(lambda t: torch.softmax(model(t), 1)).attribute(
            x, sliding_window_shapes=(1, 4, 4), strides=(1, 2, 2), baselines=0, target=0
        )[0, 0]
    assert torch.allclose(probs, base - drop, atol=1e-6)
    uneven, _ = occlusion(model, x, target=0, patch=5, stride=2)  # starts 0, 2, 4, 6 and the flush 7
    assert uneven[2:6, 11].max() < base - 1e-3  # column 11 is covered by the flush window over the square
