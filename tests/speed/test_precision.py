"""Precision: the automatic choice on each kind of CPU (capability faked each way), the reason recorded in
the run, and fp16 with a GradScaler on the CPU (an overflow is skipped and the scale lowered; a real NaN
loss still stops the run)."""

from __future__ import annotations

import json

import pytest
import torch

from cnnkit import runtime
from cnnkit.config import build_config
from cnnkit.engine import Trainer
from cnnkit.errors import CnnkitError
from cnnkit.tasks.classify import Classify

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    "flags, oneDNN_says_bf16, expected",
    [
        ({"avx2", "fma"}, False, None),  # fp32-only (AVX2)
        ({"avx512f", "avx512bw", "avx512vl", "avx512dq"}, True, None),  # AVX-512 that only emulates bf16
        ({"avx512f", "avx512bw", "avx512_bf16"}, True, torch.bfloat16),  # native bf16 (AVX-512 BF16)
        ({"avx512f", "amx_bf16", "amx_tile"}, True, torch.bfloat16),  # native bf16 (AMX)
    ],
)  # fmt: skip
def test_auto_precision_follows_the_cpus_real_capability(monkeypatch, flags, oneDNN_says_bf16, expected):
    monkeypatch.setattr(runtime, "cpu_flags", lambda: set(flags))
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: oneDNN_says_bf16, raising=False)
    dtype, reason = runtime.choose_precision("auto", CPU)
    assert dtype == expected
    assert reason.startswith("auto:") and ("native bf16" in reason)
    assert ("no native" in reason) == (expected is None)


def test_explicit_precision_is_kept_with_its_reason():
    assert runtime.choose_precision("fp32", CPU) == (None, "train.precision=fp32")
    assert runtime.choose_precision("bf16", CPU)[0] == torch.bfloat16
    assert runtime.choose_precision("fp16", CPU)[0] == torch.float16
    with pytest.raises(CnnkitError, match="precision one of"):
        runtime.choose_precision("fp8", CPU)


def test_the_chosen_precision_and_why_are_in_the_run(digits_run):
    card = json.loads((digits_run / "model.json").read_text())
    metrics = json.loads((digits_run / "metrics.json").read_text())
    assert card["precision_reason"] == metrics["precision_reason"] and card["precision_reason"].startswith("auto:")
    assert card["precision"] == metrics["precision"]


def fp16_trainer(tmp_path, *sets: str) -> Trainer:
    cfg = build_config(sets=["data.name=digits", "train.precision=fp16", "train.channels_last=false",
                             f"train.out={tmp_path}", *sets])  # fmt: skip
    return Trainer(cfg, tmp_path, Classify(), log=lambda *_: None, progress=False)


def first_batch(trainer: Trainer):
    return trainer.data.train.images[:32], trainer.data.train.labels[:32]


def test_fp16_overflow_is_skipped_and_the_scale_lowered(tmp_path):
    trainer = fp16_trainer(tmp_path)
    assert trainer.scaler.is_enabled() and trainer.dtype == torch.float16
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**100)  # any fp16 gradient overflows at this scale
    before = {k: v.clone() for k, v in trainer.model.state_dict().items() if v.is_floating_point()}
    trainer.step(*first_batch(trainer))  # no error: an overflow is the scaler's business, not a divergence
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if "running" not in k)  # the step was skipped
    assert trainer.scaler.get_scale() == 2.0**99  # and the scale halved
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    trainer.step(*first_batch(trainer))
    assert any(not torch.equal(before[k], trainer.model.state_dict()[k]) for k in before)  # a normal step trains


def test_a_real_nan_loss_still_stops_an_fp16_run(tmp_path, monkeypatch):
    trainer = fp16_trainer(tmp_path)
    loss = trainer.task.loss
    monkeypatch.setattr(trainer.task, "loss", lambda out, t: (loss(out, t)[0] * float("nan"), {}))
    with pytest.raises(CnnkitError, match="expected a finite loss"):
        trainer.step(*first_batch(trainer))


def test_skip_mode_survives_a_nan_loss_in_fp16(tmp_path, monkeypatch):
    trainer = fp16_trainer(tmp_path, "train.on_nonfinite=skip")
    loss = trainer.task.loss
    calls = {"n": 0}

    def sometimes_nan(out, t):
        calls["n"] += 1
        value, stats = loss(out, t)
        return (value * float("nan"), stats) if calls["n"] == 1 else (value, stats)

    monkeypatch.setattr(trainer.task, "loss", sometimes_nan)
    assert trainer.step(*first_batch(trainer))[0] != trainer.step(*first_batch(trainer))[0]  # nan, then a number
    assert trainer.skipped_steps == 1
