"""Optimisers, schedules, regularisers, initialisation and augmentation each do what they say."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from cnnkit.config import OptimConfig
from cnnkit.data.augment import BatchAugment, auto_preset, preset
from cnnkit.engine.init import init_weights
from cnnkit.engine.optim import build_optimizer, decay_groups, l1_penalty, lr_factor, weight_params
from cnnkit.errors import CnnkitError
from cnnkit.models._contract import AuxOutput
from cnnkit.tasks.objective import Objective, class_weights


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_each_optimiser_lowers_a_convex_loss(name):
    torch.manual_seed(0)
    model = nn.Linear(5, 1)
    x = torch.randn(64, 5)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0]) + 0.1
    opt = build_optimizer(model, OptimConfig(name=name, lr=0.05, weight_decay=0.0))
    losses = []
    for _ in range(100):
        loss = ((model(x).squeeze(1) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0]


@pytest.mark.parametrize(("momentum", "nesterov"), [(0.9, True), (0.0, False)])
def test_nesterov_only_with_momentum(momentum, nesterov):
    # torch refuses nesterov with momentum 0; the builder drops it instead of failing the run
    opt = build_optimizer(nn.Linear(2, 2), OptimConfig(name="sgd", momentum=momentum, nesterov=True))
    assert opt.param_groups[0]["nesterov"] is nesterov and opt.param_groups[0]["momentum"] == momentum
    with pytest.raises(ValueError, match="[Nn]esterov"):
        torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1, momentum=0.0, nesterov=True)


def test_weight_decay_skips_biases_and_norms():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    decay, no_decay = decay_groups(model, 0.01)
    assert {p.ndim for p in decay["params"]} == {2, 4} and decay["weight_decay"] == 0.01
    assert {p.ndim for p in no_decay["params"]} == {1} and no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_schedules():
    assert lr_factor("constant", 50, 100, 0) == 1.0
    assert lr_factor("constant", 4, 100, 10) == pytest.approx(0.5)  # warm-up
    assert lr_factor("cosine", 0, 100, 0) == 1.0 and lr_factor("cosine", 50, 100, 0) == pytest.approx(0.5)
    assert lr_factor("cosine", 100, 100, 0) == pytest.approx(0.0)
    peak = max(range(100), key=lambda s: lr_factor("warmup_cosine", s, 100, 0))
    assert peak == 24 and lr_factor("warmup_cosine", 0, 100, 0) == pytest.approx(0.04)
    assert lr_factor("warmup_cosine", 25 + 75 // 2, 100, 0) == pytest.approx(0.5, abs=0.02)  # cosine after warm-up
    # the old name is an alias of the same curve
    assert [lr_factor("onecycle", s, 100, 0) for s in range(100)] == [
        lr_factor("warmup_cosine", s, 100, 0) for s in range(100)
    ]
    with pytest.raises(CnnkitError, match="warmup_cosine"):
        lr_factor("one_cycle", 0, 100, 0)
    assert [lr_factor("step", s, 100, 0, step_size=30, gamma=0.1) for s in (0, 29, 30, 60)] == pytest.approx(
        [1, 1, 0.1, 0.01]
    )


def test_l1_drives_weights_to_zero():
    torch.manual_seed(0)
    x = torch.randn(256, 20)
    y = x[:, :3] @ torch.tensor([2.0, -1.0, 1.5]) + 0.5 * torch.randn(256)  # only 3 of 20 inputs matter

    def fit(l1: float) -> torch.Tensor:
        model = nn.Linear(20, 1, bias=False)
        params = weight_params(model)  # what the trainer penalises: optim.l1 × l1_penalty(params)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        for _ in range(1500):
            pred = model(x).squeeze(1)
            loss = ((pred - y) ** 2).mean() + l1 * l1_penalty(params)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return model.weight.detach().abs().squeeze(0)

    plain, sparse = fit(0.0), fit(0.2)
    assert sparse[3:].max() < 0.01 < plain[3:].max()  # irrelevant inputs: L1 zeroes them, plain least squares does not
    assert sparse[:3].min() > 0.5


def test_zero_init_never_breaks_symmetry():
    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))

    def train(scheme: str) -> nn.Module:
        model = init_weights(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)), scheme)
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        for _ in range(50):
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return model

    hidden = train("zeros")[0].weight
    assert torch.equal(hidden, hidden[:1].expand_as(hidden))  # all 8 hidden units are still the same unit
    hidden = train("kaiming")[0].weight
    assert not torch.allclose(hidden, hidden[:1].expand_as(hidden))


@pytest.mark.parametrize("scheme", ["xavier", "kaiming", "normal"])
def test_init_schemes_scale_by_fan_in(scheme):
    torch.manual_seed(0)
    layer = init_weights(nn.Sequential(nn.Linear(400, 400)), scheme)[0]
    expected = {"xavier": math.sqrt(2 / 800), "kaiming": math.sqrt(2 / 400), "normal": 0.01}[scheme]
    assert layer.weight.std().item() == pytest.approx(expected, rel=0.05)
    assert torch.count_nonzero(layer.bias) == 0


def test_auxiliary_losses_are_weighted():
    logits, aux1, aux2 = torch.randn(3, 4, 3).unbind(0)
    y = torch.tensor([0, 1, 2, 0])
    ce = nn.functional.cross_entropy
    total, main = Objective(aux_weight=0.3)(AuxOutput(logits, [aux1, aux2]), y)
    assert torch.equal(main, logits)
    assert total.item() == pytest.approx((ce(logits, y) + 0.3 * ce(aux1, y) + 0.3 * ce(aux2, y)).item(), rel=1e-6)


@pytest.mark.parametrize("aux_weight", [0.3, 0.0])
def test_googlenet_trains_with_its_auxiliary_heads(tmp_path, monkeypatch, aux_weight):
    """One real epoch: with aux_weight > 0 the auxiliary heads exist and their loss moves their weights."""
    from cnnkit.config import build_config
    from cnnkit.engine.checkpoint import load_state
    from cnnkit.tasks import train
    from cnnkit.tasks.classify import Classify
    from tests.conftest import make_folder

    built, build = {}, Classify.build_model

    def spy(self, cfg, data):
        model = build(self, cfg, data)
        built.update({k: v.clone() for k, v in model.state_dict().items()})
        return model

    monkeypatch.setattr(Classify, "build_model", spy)
    make_folder(tmp_path / "d", per_class=6, mode="RGB")
    sets = [f"data.name={tmp_path / 'd'}", "data.image_size=64", "model.name=googlenet", "train.batch_size=4",
            "train.epochs=1", "train.report=false", f"model.aux_weight={aux_weight}"]  # fmt: skip
    sets.append(f"train.out={tmp_path / 'r'}")
    run = train(build_config(sets=sets), log=lambda *_: None, progress=False)
    card = json.loads((run / "model.json").read_text())
    trained = load_state(run / "train_state.pt")["model"]
    aux = sorted(k for k in trained if k.startswith(("aux1.", "aux2.")) and k.endswith("weight"))
    if_aux = {"aux_logits": True} if aux_weight else {}
    assert card["model_kwargs"] == if_aux and bool(aux) == bool(aux_weight)
    heads = [k for k in aux if k.endswith("fc2.weight")]
    assert heads == (["aux1.fc2.weight", "aux2.fc2.weight"] if aux_weight else [])
    assert all(not torch.equal(built[k], trained[k]) for k in heads)  # the auxiliary losses trained the heads


def test_balanced_class_weights():
    w = class_weights(torch.tensor([0, 0, 0, 1]), 2, "balanced")
    assert w.tolist() == pytest.approx([4 / 6, 2.0])
    assert class_weights(torch.tensor([0, 1]), 2, "none") is None


def test_augmentation_is_task_aware():
    assert auto_preset("digits") == "digits" and auto_preset("fashion-mnist") == "clothes"
    assert auto_preset("/data/photos") == "photos"
    assert "Flip" not in repr(preset("digits", (8, 8)))
    assert preset("clothes", (28, 28)).flip and preset("clothes", (28, 28)).pad == 2
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    for name in ("none", "digits", "clothes", "photos", "randaugment", "trivialaugment"):
        out = BatchAugment(preset(name, (32, 32)))(x)
        assert out.shape == x.shape and out.dtype == torch.uint8


def test_batch_crop_flip_draws_each_image_independently():
    from cnnkit.data.augment import BatchCropFlip

    torch.manual_seed(0)
    x = torch.randint(1, 256, (64, 2, 6, 5), dtype=torch.uint8)
    out = BatchCropFlip(pad=1)(x)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    seen = set()
    for img, src in zip(out, padded):
        crops = {(dy, dx, f): src[:, dy : dy + 6, dx : dx + 5].flip(2) if f else src[:, dy : dy + 6, dx : dx + 5]
                 for dy in range(3) for dx in range(3) for f in (0, 1)}  # fmt: skip
        match = [k for k, c in crops.items() if torch.equal(c, img)]
        assert match, "every output is a padded crop of its own input, maybe flipped"
        seen.add(match[0])
    assert len(seen) > 10 and {f for _, _, f in seen} == {0, 1}
