"""The training loop and its run directory."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from cnnkit.config import build_config
from cnnkit.engine import Trainer, resume, train
from cnnkit.engine.checkpoint import load_state
from cnnkit.engine.history import HISTORY_COLUMNS
from cnnkit.errors import CnnkitError

RUN_FILES = {
    "model.safetensors",
    "last.safetensors",
    "train_state.pt",
    "model.json",
    "config.yaml",
    "history.csv",
    "metrics.json",
}


def digits_cfg(out, *sets):
    return build_config(sets=["data.name=digits", f"train.out={out}", "train.epochs=2", *sets])


def test_run_directory_contents(digits_run):
    assert {p.name for p in digits_run.iterdir()} >= RUN_FILES
    assert not [p for p in digits_run.iterdir() if p.name.startswith(".")]  # no temp files left
    rows = list(csv.DictReader((digits_run / "history.csv").open()))
    assert len(rows) == 2 and tuple(rows[0]) == HISTORY_COLUMNS
    assert all(float(r["images_per_s"]) > 0 and float(r["lr"]) > 0 for r in rows)
    card = json.loads((digits_run / "model.json").read_text())
    assert card["model"] == "smallcnn" and card["classes"][0] == "0"
    assert card["input"] == {"channels": 1, "height": 8, "width": 8}
    assert card["preprocessing"]["mean"] and card["preprocessing"]["mode"] == "L"
    metrics = json.loads((digits_run / "metrics.json").read_text())
    assert metrics["best_epoch"] in (1, 2) and 0 < metrics["val_accuracy"] <= 1
    assert metrics["num_test"] == 359  # the test split is held out, not trained on


def test_train_state_loads_with_weights_only(digits_run):
    state = load_state(digits_run / "train_state.pt")
    assert state["epoch"] == 2 and "optimizer" in state and isinstance(state["rng"]["torch"], torch.Tensor)


def test_resume_matches_an_uninterrupted_run(tmp_path):
    full = train(digits_cfg(tmp_path / "full", "train.epochs=3"), log=lambda *_: None, progress=False)
    cfg = digits_cfg(tmp_path / "cut", "train.epochs=3")
    trainer = Trainer(cfg, tmp_path / "cut", log=lambda *_: None, progress=False)
    trainer.write_static_files()
    row = {"epoch": 1, "lr": 0.0, **trainer.train_epoch(), **trainer.validate()}
    trainer.epoch = 1
    trainer.end_epoch(row)  # "interrupted" after epoch 1
    resume(tmp_path / "cut", log=lambda *_: None, progress=False)
    a, b = load_file(full / "last.safetensors"), load_file(tmp_path / "cut" / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_existing_run_is_not_overwritten(digits_run):
    with pytest.raises(CnnkitError, match="--resume"):
        train(build_config(sets=["data.name=digits", f"train.out={digits_run}"]))


def test_non_finite_loss_stops_and_keeps_no_bad_weights(tmp_path):
    cfg = digits_cfg(tmp_path / "r", "optim.lr=1e12", "optim.schedule=constant", "train.epochs=3")
    with pytest.raises(CnnkitError, match="finite"):
        train(cfg, log=lambda *_: None, progress=False)
    for name in ("model.safetensors", "last.safetensors"):
        if (tmp_path / "r" / name).exists():
            assert all(torch.isfinite(v).all() for v in load_file(tmp_path / "r" / name).values())


def test_lenet5_on_digits_is_resized_to_its_fixed_input(tmp_path):
    run = train(digits_cfg(tmp_path / "l", "model.name=lenet5", "train.epochs=1"), log=lambda *_: None, progress=False)
    assert json.loads((run / "model.json").read_text())["input"] == {"channels": 1, "height": 28, "width": 28}


def test_wrong_size_for_a_fixed_model_is_clear(tmp_path):
    with pytest.raises(CnnkitError, match="28×28"):
        train(digits_cfg(tmp_path / "l", "model.name=lenet5", "data.image_size=16"), log=lambda *_: None)


@pytest.mark.parametrize(
    ("key", "value"),
    [("optim.name", "rmsprop"), ("optim.schedule", "wavy"), ("train.precision", "fp8"), ("train.device", "tpu")],
)
def test_bad_choices_are_clear(tmp_path, key, value):
    with pytest.raises(CnnkitError, match="expected"):
        train(digits_cfg(tmp_path / "x", f"{key}={value}"), log=lambda *_: None)
