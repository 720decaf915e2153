"""Averaging predictions: ensemble modes and flip TTA, against direct computations on a toy model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cnnkit.config import Config
from cnnkit.data import TensorImages
from cnnkit.errors import CnnkitError
from cnnkit.evaluate import combine
from cnnkit.evaluate.ensemble import check_flips, predict_member
from cnnkit.evaluate.runs import EvalSet, Member
from cnnkit.predict import Predictor
from cnnkit.runcard import InputSpec, RunCard


def test_combine_averages_probabilities_or_logits():
    g = torch.Generator().manual_seed(0)
    logits = [torch.randn(6, 4, generator=g) * 2 for _ in range(3)]
    log_probs = [torch.log_softmax(z, 1) for z in logits]
    z = np.stack([x.double().numpy() for x in logits])  # [M, N, K]
    p = np.exp(z) / np.exp(z).sum(2, keepdims=True)
    assert combine(log_probs, "prob").exp().numpy() == pytest.approx(p.mean(0), rel=1e-5)
    mean_z = z.mean(0)
    softmax_mean = np.exp(mean_z) / np.exp(mean_z).sum(1, keepdims=True)
    assert combine(log_probs, "logit").exp().numpy() == pytest.approx(softmax_mean, rel=1e-5)
    with pytest.raises(CnnkitError, match="prob, logit"):
        combine(log_probs, "median")


def _toy_member_and_set() -> tuple[Member, EvalSet, nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    card = RunCard(
        model="toy",
        num_classes=3,
        classes=["a", "b", "c"],
        input=InputSpec(1, 4, 4),
        preprocessing={"resize": [4, 4], "mean": [0.5], "std": [0.25]},
    )
    images = torch.randint(0, 256, (10, 1, 4, 4), dtype=torch.uint8)
    ds = TensorImages(images, torch.arange(10) % 3)
    ev = EvalSet("toy", "test", card.classes, ds.labels, list(range(10)), {(4, 4): ds})
    return Member(Path("toy"), Predictor(model, card), Config()), ev, model, images


@pytest.mark.parametrize("mode", ["prob", "logit"])
def test_tta_averages_each_image_with_its_mirror_image(mode):
    member, ev, model, images = _toy_member_and_set()
    out = predict_member(member, ev, tta=True, mode=mode)
    x = (images.double() / 255 - 0.5) / 0.25
    with torch.no_grad():
        z, z_flipped = model.double()(x), model(x.flip(-1))
    assert out["plain"].exp().numpy() == pytest.approx(z.softmax(1).numpy(), rel=1e-4)
    expected = (z.softmax(1) + z_flipped.softmax(1)) / 2 if mode == "prob" else ((z + z_flipped) / 2).softmax(1)
    assert out["tta"].exp().numpy() == pytest.approx(expected.numpy(), rel=1e-4)
    assert not torch.allclose(out["tta"], out["plain"])


def test_flips_refused_for_digits_only():
    with pytest.raises(CnnkitError, match="mirrored"):
        check_flips("digits")
    check_flips("fashion-mnist")
    check_flips("/some/photos")
