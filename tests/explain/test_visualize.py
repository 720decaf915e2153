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
    if "resnet18" not in cnnkit.list_models():
        pytest.skip("resnet18 is not registered")
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
