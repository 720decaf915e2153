"""The training loop and its run directory: files, resume, interruption, early stopping, NaN handling, DDP."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from cnnkit.config import build_config
from cnnkit.engine import Trainer
from cnnkit.engine.checkpoint import load_state
from cnnkit.errors import CnnkitError
from cnnkit.tasks import resume, train
from cnnkit.tasks.classify import Classify

HISTORY_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_macro_f1", "lr",
                   "epoch_time_s", "images_per_s")  # fmt: skip
RUN_FILES = {"model.safetensors", "train_state.pt", "model.json", "config.yaml", "history.csv", "metrics.json",
             "curves.png", "report.html", "report.md"}  # fmt: skip
QUIET = {"log": lambda *_: None, "progress": False}


def digits_cfg(out, *sets):
    return build_config(sets=["data.name=digits", f"train.out={out}", "train.epochs=2", "train.report=false", *sets])


def last_weights(run):
    return load_state(run / "train_state.pt")["model"]


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
    assert state["model"].keys() == load_file(digits_run / "model.safetensors").keys()


def test_resume_at_an_epoch_boundary_is_bit_exact(tmp_path):
    full = train(digits_cfg(tmp_path / "full", "train.epochs=3"), **QUIET)
    trainer = Trainer(digits_cfg(tmp_path / "cut", "train.epochs=3"), tmp_path / "cut", Classify(), **QUIET)
    trainer.write_static_files()
    row = {"epoch": 1, "lr": 0.0, **trainer.train_epoch(), **trainer.validate()}
    trainer.epoch = 1
    trainer.end_epoch(row)  # "interrupted" after epoch 1
    resume(tmp_path / "cut", **QUIET)
    a, b = last_weights(full), last_weights(tmp_path / "cut")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_inside_an_epoch_is_bit_exact(tmp_path, monkeypatch):
    sets = ("train.epochs=2", "train.save_every_steps=4", "data.augment=digits", "data.mixup=0.5")
    full = train(digits_cfg(tmp_path / "full", *sets), **QUIET)
    steps_per_epoch = load_state(full / "train_state.pt")["scheduler"]["last_epoch"] // 2
    assert steps_per_epoch > 6
    calls = {"n": 0}
    step = Trainer.step

    def interrupted(self, x, y):
        calls["n"] += 1
        if calls["n"] == steps_per_epoch + 6:  # step 6 of epoch 2: 2 steps after the checkpoint at step 4
            raise KeyboardInterrupt
        return step(self, x, y)

    monkeypatch.setattr(Trainer, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(digits_cfg(tmp_path / "cut", *sets), **QUIET)
    monkeypatch.setattr(Trainer, "step", step)
    state = load_state(tmp_path / "cut" / "train_state.pt")
    assert (state["epoch"], state["step_in_epoch"]) == (1, 4)  # the last save before the interruption
    resume(tmp_path / "cut", **QUIET)
    a, b = last_weights(full), last_weights(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["train_loss"] for r in json_history(full)] == [r["train_loss"] for r in json_history(tmp_path / "cut")]


def json_history(run):
    return list(csv.DictReader((run / "history.csv").open()))


# The child trains with a pause in every step, so it cannot finish before the kill lands.
SLOW_CHILD = """
import sys, time
from cnnkit.engine import Trainer
step = Trainer.step
Trainer.step = lambda self, *a: (time.sleep(0.2), step(self, *a))[1]
from cnnkit.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigkill_leaves_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-c", SLOW_CHILD, "train", "--data", "digits", "--epochs", "3", "--out", str(out),
           "--quiet", "--set", "train.save_every_steps=1", "--set", "train.report=false"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.time() + 120
        while not (out / "train_state.pt").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        time.sleep(0.3)  # a checkpoint write or two later: the kill lands mid-training, maybe mid-write
        assert proc.poll() is None, f"the child ended before the kill: {proc.stderr.read().decode()[-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL  # killed, not finished
    state = load_state(out / "train_state.pt")  # intact: every write is temp file + os.replace
    assert (state["epoch"], state["step_in_epoch"]) > (0, 0) and state["epoch"] < 3
    resume(out, **QUIET)
    assert load_state(out / "train_state.pt")["epoch"] == 3


def test_existing_run_is_not_overwritten(digits_run):
    with pytest.raises(CnnkitError, match="--resume"):
        train(build_config(sets=["data.name=digits", f"train.out={digits_run}"]))


def test_non_finite_loss_stops_and_keeps_no_bad_weights(tmp_path):
    cfg = digits_cfg(tmp_path / "r", "optim.lr=1e12", "optim.schedule=constant", "train.epochs=3")
    with pytest.raises(CnnkitError, match="finite"):
        train(cfg, **QUIET)
    weights = list((tmp_path / "r").glob("*.safetensors"))
    assert all(torch.isfinite(v).all() for w in weights for v in load_file(w).values())


def test_non_finite_loss_in_epoch_two_keeps_epoch_ones_weights(tmp_path, monkeypatch):
    from cnnkit.tasks import objective as loss

    original, end_epoch, epochs_done = loss.Objective.__call__, Trainer.end_epoch, []

    def poisoned(self, output, target):
        total, logits = original(self, output, target)
        return (total * float("nan") if epochs_done else total), logits

    def count_epochs(self, row):
        end_epoch(self, row)
        epochs_done.append(row["epoch"])

    monkeypatch.setattr(loss.Objective, "__call__", poisoned)
    monkeypatch.setattr(Trainer, "end_epoch", count_epochs)
    with pytest.raises(CnnkitError, match="finite.*epoch 2"):
        train(digits_cfg(tmp_path / "r", "train.epochs=3", "train.monitor=val_loss"), **QUIET)
    assert epochs_done == [1]
    best = load_file(tmp_path / "r" / "model.safetensors")  # epoch 1's, the only (and best) epoch
    last = last_weights(tmp_path / "r")
    assert all(torch.isfinite(v).all() for v in best.values())
    assert all(torch.equal(best[k], last[k]) for k in best)  # nothing written after the bad step


def test_nan_injection_is_skipped_when_asked(tmp_path, monkeypatch):
    from cnnkit.tasks import objective as loss

    calls = {"n": 0}
    original = loss.Objective.__call__

    def poisoned(self, output, target):
        calls["n"] += 1
        total, logits = original(self, output, target)
        return (total * float("nan") if calls["n"] == 3 else total), logits

    monkeypatch.setattr(loss.Objective, "__call__", poisoned)
    lines = []
    run = train(
        digits_cfg(tmp_path / "r", "train.on_nonfinite=skip", "train.epochs=1"), log=lines.append, progress=False
    )
    assert any("skipped a step" in line for line in lines)
    assert all(torch.isfinite(v).all() for v in last_weights(run).values() if v.is_floating_point())


def test_early_stopping_stops(tmp_path):
    sets = ("optim.lr=0", "optim.schedule=constant", "train.epochs=6", "train.early_stop_patience=2",
            "train.monitor=val_loss")  # fmt: skip
    lines = []
    run = train(digits_cfg(tmp_path / "r", *sets), log=lines.append, progress=False)
    assert len(json_history(run)) == 3  # epoch 1 sets the best; 2 and 3 don't improve; stop
    assert any("early stopping" in line for line in lines)
    assert json.loads((run / "metrics.json").read_text())["best_epoch"] == 1


@pytest.mark.parametrize("batch", ["full", "1"])
def test_batch_and_stochastic_gradient_descent(tmp_path, batch):
    from tests.conftest import make_folder

    make_folder(tmp_path / "d", per_class=10)
    sets = (f"data.name={tmp_path / 'd'}", "data.image_size=8", f"train.batch_size={batch}", "train.epochs=1")
    run = train(build_config(sets=[*sets, f"train.out={tmp_path / 'r'}"]), **QUIET)
    steps = load_state(run / "train_state.pt")["scheduler"]["last_epoch"]
    n_train = json.loads((run / "metrics.json").read_text())["num_train"]
    assert steps == (1 if batch == "full" else n_train)


def test_lenet5_on_digits_is_resized_to_its_fixed_input(tmp_path):
    run = train(digits_cfg(tmp_path / "l", "model.name=lenet5", "train.epochs=1"), **QUIET)
    assert json.loads((run / "model.json").read_text())["input"] == {"channels": 1, "height": 28, "width": 28}


def test_wrong_size_for_a_fixed_model_is_clear(tmp_path):
    with pytest.raises(CnnkitError, match="28×28"):
        train(digits_cfg(tmp_path / "l", "model.name=lenet5", "data.image_size=16"), **QUIET)


@pytest.mark.parametrize(
    ("key", "value"),
    [("optim.name", "rmsprop"), ("optim.schedule", "wavy"), ("train.precision", "fp8"), ("train.device", "tpu"),
     ("train.monitor", "val_auc"), ("model.init", "ones"), ("data.augment", "wild"), ("train.batch_size", "half")],
)  # fmt: skip
def test_bad_choices_are_clear(tmp_path, key, value):
    with pytest.raises(CnnkitError, match="expected"):
        train(digits_cfg(tmp_path / "x", f"{key}={value}"), **QUIET)


def test_ddp_two_processes_write_one_run(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "cnnkit",
           "train", "--data", "digits", "--epochs", "1", "--out", str(out), "--quiet"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("epoch 1/1") == 1 and r.stdout.count("run directory") == 1  # rank 0 alone logs
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["num_train"] == 1294
    assert float(json_history(out)[0]["train_accuracy"]) > 0.3  # learned something (chance is 0.1)
    assert (out / "model.safetensors").exists()
