"""Fine-tuning: freeze specs, frozen BatchNorm, per-group learning rates, 1-channel stems, and a two-phase run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cnnkit.config import Config, OptimConfig, TrainConfig, build_config
from cnnkit.engine import freeze as transfer
from cnnkit.engine.checkpoint import load_state
from cnnkit.engine.trainer import Trainer
from cnnkit.errors import CnnkitError
from cnnkit.models import create_model, parameter_groups
from cnnkit.predict import Predictor
from cnnkit.tasks.classify import Classify
from tests.conftest import make_folder
from tests.transfer.conftest import needs_lite0

LITE_GROUPS = ["stem", "stage1", "stage2", "stage3", "stage4", "head"]


@pytest.fixture(scope="module")
def lite0() -> torch.nn.Module:
    return create_model("efficientnet_lite0", num_classes=3)


def test_freeze_specs(lite0: torch.nn.Module) -> None:
    assert list(lite0.group_matcher()) == LITE_GROUPS
    assert transfer.resolve_freeze(lite0, "none") == []
    assert transfer.resolve_freeze(lite0, "all-but-head") == LITE_GROUPS[:-1]
    assert transfer.resolve_freeze(lite0, "2") == ["stem", "stage1"]
    assert transfer.resolve_freeze(lite0, "stage2, stem") == ["stem", "stage2"]
    with pytest.raises(CnnkitError, match="did you mean 'stage1'"):
        transfer.resolve_freeze(lite0, "stage_1")
    with pytest.raises(CnnkitError, match="at most 6"):
        transfer.resolve_freeze(lite0, "7")


def plan_for(model: torch.nn.Module, freeze: str, head_epochs: int = 0) -> transfer.FreezePlan:
    cfg = Config()
    cfg.model.freeze, cfg.train.head_epochs = freeze, head_epochs
    return transfer.FreezePlan.from_config(model, cfg)


def test_frozen_batchnorm_stays_in_eval_mode() -> None:
    model = create_model("efficientnet_lite0", num_classes=3)
    plan = plan_for(model, "stem,stage1", head_epochs=2)
    model.train()
    plan.apply(model, epoch=0)  # head-only epoch: every group but the head frozen
    assert not model._bn0.training and not model._blocks[-1]._bn2.training and not model._bn1.training
    assert not any(p.requires_grad for n, p in model.named_parameters() if not n.startswith("_fc"))
    model.train()
    plan.apply(model, epoch=2)  # afterwards: only stem and stage1
    assert not model._bn0.training and not model._blocks[1]._bn1.training  # _blocks.1 opens stage1
    assert model._blocks[3]._bn1.training and model._bn1.training
    frozen = {g for g, ps in parameter_groups(model).items() if not any(p.requires_grad for _, p in ps)}
    assert frozen == {"stem", "stage1"} and plan.card() == {"frozen_groups": ["stem", "stage1"], "head_epochs": 2,
                                                            "freeze_bn": False}  # fmt: skip
    with pytest.raises(CnnkitError, match="leave a group to train"):
        plan_for(model, "6")


def test_freeze_bn_keeps_pretrained_statistics_of_trained_groups() -> None:
    model = create_model("efficientnet_lite0", num_classes=3)
    cfg = Config()
    cfg.model.freeze_bn = True
    plan = transfer.FreezePlan.from_config(model, cfg)
    model.train()
    plan.apply(model, epoch=0)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(p.requires_grad for p in model.parameters()) and not any(m.training for m in norms)
    assert model._dropout.training and plan.card()["freeze_bn"] is True


def test_discriminative_learning_rates() -> None:
    model = create_model("efficientnet_lite0", num_classes=3)
    transfer.set_frozen(model, ["stem"])
    groups = transfer.discriminative_groups(model, OptimConfig(lr=0.1, backbone_lr_mult=0.01, weight_decay=1e-4))
    assert groups[0]["group"] == "head" and groups[0]["lr"] == 0.1 and groups[0]["weight_decay"] == 1e-4
    assert {g["group"] for g in groups} == set(LITE_GROUPS) - {"stem"}
    assert all(g["lr"] == pytest.approx(0.001) for g in groups if g["group"] != "head")
    assert all(g["weight_decay"] == 0 for g in groups if g["params"][0].ndim == 1)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(p.numel() for g in groups for p in g["params"]) == n_trainable


@needs_lite0
@torch.no_grad()
def test_one_channel_stem_matches_rgb_on_a_replicated_gray_image() -> None:
    rgb = create_model("efficientnet_lite0", pretrained=True).eval()
    gray = create_model("efficientnet_lite0", pretrained=True, in_chans=1).eval()
    assert gray._conv_stem.weight.shape == (32, 1, 3, 3) and gray.default_input[0] == 1
    image = torch.randint(0, 256, (2, 1, 64, 64)).float() / 255

    def norm(x: torch.Tensor, m: torch.nn.Module) -> torch.Tensor:
        return (x - torch.tensor(m.mean).view(1, -1, 1, 1)) / torch.tensor(m.std).view(1, -1, 1, 1)

    out_rgb, out_gray = rgb(norm(image.expand(-1, 3, -1, -1), rgb)), gray(norm(image, gray))
    assert torch.allclose(out_gray, out_rgb, atol=1e-4) and out_rgb.std() > 0.1


@needs_lite0
def test_two_phase_fine_tuning_run(tmp_path: Path, capsys) -> None:
    data = make_folder(tmp_path / "data", classes=("dark", "mid", "light"), per_class=10)
    sets = [f"data.name={data}", "model.name=efficientnet_lite0", "model.pretrained=true", "data.image_size=32",
            "model.freeze=stem,stage1", "train.head_epochs=1", "train.epochs=2", "train.batch_size=8",
            "optim.lr=0.05", "optim.backbone_lr_mult=0.2", "train.precision=fp32"]  # fmt: skip
    if hasattr(TrainConfig(), "report"):
        sets.append("train.report=false")
    run = tmp_path / "run"
    run.mkdir()
    trainer = Trainer(build_config(sets=sets), run, Classify(), log=lambda *_: None, progress=False)
    start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    last = load_state(run / "train_state.pt")["model"]
    groups = {g: [n for n, _ in ps] for g, ps in parameter_groups(create_model("efficientnet_lite0")).items()}
    for name in groups["stem"] + groups["stage1"]:
        assert torch.equal(last[name], start[name]), name
    stats = [k for k in start if k.startswith(("_bn0.", "_blocks.0.", "_blocks.1.")) and "running" in k]
    assert stats and all(torch.equal(last[k], start[k]) for k in stats)  # frozen BatchNorm: statistics unchanged
    for changed in ("_fc.weight", "_blocks.15._project_conv.weight", "_bn1.running_mean"):  # head, stage4 trained
        assert not torch.equal(last[changed], start[changed]), changed
    card = json.loads((run / "model.json").read_text())
    assert card["frozen_groups"] == ["stem", "stage1"] and card["pretrained"]["sha256"].startswith("57934424")
    assert card["preprocessing"]["mean"] == [127 / 255] and card["input"]["channels"] == 1
    head = load_file(run / "model.safetensors")["_fc.weight"]
    assert head.shape == (3, 1280)
    pred = Predictor.from_run(run).predict([data / "light" / "0.png"], topk=3)[0]
    assert {name for name, _ in pred.topk} == {"dark", "mid", "light"}
    from cnnkit.cli import main

    assert main(["explain", str(run)]) == 0  # `cnnkit explain RUN` marks the frozen groups
    table = capsys.readouterr().out
    assert "  stem " in table and table.split("groups (stem to head):")[1].count("frozen") == 2
