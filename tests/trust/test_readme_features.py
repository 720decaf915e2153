"""Every training and command-line feature the README names, each with a test that fails if the feature breaks.

Issue 15, point 5. Expected values come from closed forms, the lecture notes, the recipe files or a hand
computation on the saved outputs, never from the code's own output. Everything is small: digits (8×8) or a
tiny class folder, one or two epochs.
"""

from __future__ import annotations

import json
import math
import shutil
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

from cnnkit.config import RECIPES, build_config
from cnnkit.engine import Trainer
from cnnkit.engine.checkpoint import load_state
from cnnkit.runcard import SPLIT
from cnnkit.tasks.classify import Classify
from cnnkit.tasks.objective import Objective
from tests.conftest import make_folder

QUIET = {"log": lambda *_: None, "progress": False}
SPECS = Path(__file__).resolve().parents[2] / "cnnkit" / "configs" / "specs"


def digits_trainer(tmp_path: Path, *sets: str) -> Trainer:
    """A Trainer on digits (nothing written, nothing trained until asked); fp32 and no augmentation unless set."""
    cfg = build_config(sets=["data.name=digits", "train.precision=fp32", "data.augment=none",
                             "train.channels_last=false", f"train.out={tmp_path / 'run'}", *sets])  # fmt: skip
    return Trainer(cfg, tmp_path / "run", Classify(), **QUIET)


def first_batch(trainer: Trainer, n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    return trainer.data.train.images[:n], trainer.data.train.labels[:n]


def grad_norm(model: nn.Module) -> float:
    return math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in model.parameters() if p.grad is not None))


# ---- label smoothing --------------------------------------------------------------------------------------------
def smoothed_ce(logits: torch.Tensor, labels: torch.Tensor, eps: float) -> float:
    """Closed form: mean over i of −(1 − ε)·log p[i, y_i] − (ε / K)·Σ_k log p[i, k]."""
    logp = torch.log_softmax(logits.double(), 1)
    k = logits.shape[1]
    per = -(1 - eps) * logp.gather(1, labels[:, None])[:, 0] - eps / k * logp.sum(1)
    return float(per.mean())


def test_label_smoothing_matches_the_closed_form(tmp_path):
    # one case by hand: logits (2, 0, 0), label 0, ε = 0.3: log p = (2 − L, −L, −L), L = log(e² + 2)
    # loss = −0.7·(2 − L) − 0.1·(2 − 3L) = L − 1.6
    loss, _ = Objective(label_smoothing=0.3)(torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([0]))
    assert float(loss) == pytest.approx(math.log(math.e**2 + 2) - 1.6, abs=1e-6)

    gen = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(16, 10, generator=gen) * 3, torch.randint(0, 10, (16,), generator=gen)
    loss, _ = Objective(label_smoothing=0.1)(logits, labels)
    assert float(loss) == pytest.approx(smoothed_ce(logits, labels, 0.1), abs=1e-5)
    assert float(loss) != pytest.approx(smoothed_ce(logits, labels, 0.0), abs=1e-3)  # smoothing changes the loss

    # and `train.label_smoothing` reaches the loss the Trainer optimises
    trainer = digits_trainer(tmp_path, "train.label_smoothing=0.1")
    loss, _ = trainer.task.loss(logits, (labels, labels))
    assert float(loss) == pytest.approx(smoothed_ce(logits, labels, 0.1), abs=1e-5)


# ---- gradient clipping ------------------------------------------------------------------------------------------
def test_gradient_clipping_bounds_the_global_norm_of_a_trainer_step(tmp_path):
    grads = {}
    for name, sets in (("free", ()), ("clipped", ("optim.clip_grad_norm=0.001",))):
        trainer = digits_trainer(tmp_path / name, "train.seed=3", *sets)
        torch.manual_seed(0)  # the same dropout mask in both steps
        trainer.step(*first_batch(trainer))
        grads[name] = (
            [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None],
            grad_norm(trainer.model),
        )
    free, free_norm = grads["free"]
    clipped, clipped_norm = grads["clipped"]
    assert free_norm > 0.1  # without clipping the gradient is far above the bound: the test means something
    assert clipped_norm == pytest.approx(0.001, rel=1e-3)
    scale = 0.001 / free_norm  # clipping rescales the whole gradient, keeping its direction
    assert all(torch.allclose(c, f * scale, rtol=1e-3, atol=1e-9) for c, f in zip(clipped, free))


# ---- CutMix -----------------------------------------------------------------------------------------------------
def test_cutmix_pastes_a_box_and_gives_area_weighted_soft_targets(tmp_path):
    trainer = digits_trainer(tmp_path, "data.cutmix=1.0")
    k = len(trainer.data.classes)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (8, 1, 32, 32), dtype=torch.uint8, generator=gen)
    y = torch.arange(8) % k
    plain = trainer.normalize(x)
    torch.manual_seed(1)
    for _ in range(20):  # a box of area 0 (λ = 1) is possible; draw until one is pasted
        mixed, (target, labels) = trainer.task.prepare(x, y, trainer.normalize)
        if not torch.equal(mixed, plain):
            break
    assert torch.equal(labels, y)
    assert target.shape == (8, k) and target.dtype.is_floating_point  # soft targets, not class indices
    assert torch.allclose(target.sum(1), torch.ones(8))
    # hand computation: the pasted pixels come from the batch rolled by one; λ = 1 − box area / image area
    changed = (mixed != plain).any(1)  # [B, H, W]
    assert changed.any()
    rows, cols = changed[0].any(1).nonzero()[:, 0], changed[0].any(0).nonzero()[:, 0]
    r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    box = torch.zeros(32, 32, dtype=torch.bool)
    box[r0:r1, c0:c1] = True
    rolled = plain.roll(1, 0)
    assert torch.equal(mixed[:, :, box], rolled[:, :, box]) and torch.equal(mixed[:, :, ~box], plain[:, :, ~box])
    lam = 1 - box.sum().item() / (32 * 32)
    onehot = nn.functional.one_hot(y, k).float()
    assert torch.allclose(target, lam * onehot + (1 - lam) * onehot.roll(1, 0), atol=1e-6)
    assert 0 < lam < 1


# ---- early stopping on macro-F1 ---------------------------------------------------------------------------------
def test_early_stopping_on_macro_f1(tmp_path, monkeypatch, cli):
    """Scripted validation figures: accuracy and loss improve every epoch, macro-F1 never does after epoch 1.
    Monitoring macro-F1 with patience 1 must stop after 2 epochs; monitoring accuracy must not."""
    calls = {"n": 0}

    def scripted(self, model, dataset, normalize, dtype):
        calls["n"] += 1
        return {"val_loss": 1.0 / calls["n"], "val_accuracy": 0.1 * calls["n"], "val_macro_f1": 0.5}

    monkeypatch.setattr(Classify, "validate", scripted)
    data = make_folder(tmp_path / "d", per_class=6)
    common = ("--data", data, "--image-size", "16", "--epochs", "4", "--quiet", "--set", "optim.lr=0",
              "--set", "train.early_stop_patience=1", "--set", "train.report=false")  # fmt: skip
    code, out, err = cli("train", *common, "--out", tmp_path / "f1", "--set", "train.monitor=val_macro_f1")
    assert code == 0, err
    assert "early stopping: val_macro_f1" in out
    metrics = json.loads((tmp_path / "f1" / "metrics.json").read_text())
    assert metrics["monitor"] == "val_macro_f1"
    assert (metrics["epochs"], metrics["best_epoch"], metrics["val_macro_f1"]) == (2, 1, 0.5)
    calls["n"] = 0
    code, _, err = cli("train", *common, "--out", tmp_path / "acc", "--set", "train.monitor=val_accuracy")
    assert code == 0, err
    metrics = json.loads((tmp_path / "acc" / "metrics.json").read_text())
    assert (metrics["monitor"], metrics["epochs"], metrics["best_epoch"]) == ("val_accuracy", 4, 4)


# ---- dropout override -------------------------------------------------------------------------------------------
def test_dropout_override_sets_every_dropout_layer(tmp_path):
    default = [m.p for m in digits_trainer(tmp_path / "a").model.modules() if isinstance(m, nn.Dropout)]
    assert default and 0.37 not in default
    model = digits_trainer(tmp_path / "b", "model.dropout=0.37").model
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert drops and all(m.p == 0.37 for m in drops)
    drops[0].train()
    torch.manual_seed(0)
    zeroed = (drops[0](torch.ones(200_000)) == 0).float().mean().item()
    assert zeroed == pytest.approx(0.37, abs=0.01)  # the rate is the one in effect, not only an attribute


# ---- bf16 autocast ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("precision", "expected"), [("bf16", torch.bfloat16), ("fp32", None)])
def test_bf16_precision_runs_the_forward_pass_under_cpu_autocast(tmp_path, monkeypatch, precision, expected):
    trainer = digits_trainer(tmp_path, f"train.precision={precision}")
    seen = {}
    forward = trainer.model.forward

    def spy(x):
        seen["enabled"] = torch.is_autocast_enabled("cpu")
        seen["dtype"] = torch.get_autocast_dtype("cpu")
        out = forward(x)
        seen["out"] = out.dtype
        return out

    monkeypatch.setattr(trainer.model, "forward", spy)
    loss, _ = trainer.step(*first_batch(trainer))
    assert math.isfinite(loss)
    if expected is None:
        assert not seen["enabled"] and seen["out"] == torch.float32
    else:
        assert seen["enabled"] and seen["dtype"] == expected and seen["out"] == expected
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # master weights stay fp32


# ---- --resume -----------------------------------------------------------------------------------------------------
def test_resume_flag_continues_an_interrupted_run_exactly(tmp_path, monkeypatch, cli):
    data = make_folder(tmp_path / "d", per_class=8)
    args = ("--data", data, "--image-size", "16", "--epochs", "2", "--quiet", "--set", "train.precision=fp32",
            "--set", "train.report=false")  # fmt: skip
    assert cli("train", *args, "--out", tmp_path / "full")[0] == 0

    def interrupt_after_epoch_one(self):
        if self.epoch == 1:
            raise KeyboardInterrupt
        return False

    with monkeypatch.context() as m:
        m.setattr(Trainer, "should_stop", interrupt_after_epoch_one)
        code, _, err = cli("train", *args, "--out", tmp_path / "cut")
    assert code == 130, err
    assert load_state(tmp_path / "cut" / "train_state.pt")["epoch"] == 1
    code, _, err = cli("train", "--resume", tmp_path / "cut", "--quiet")
    assert code == 0, err
    full, cut = load_state(tmp_path / "full" / "train_state.pt"), load_state(tmp_path / "cut" / "train_state.pt")
    assert cut["epoch"] == 2 and full["model"].keys() == cut["model"].keys()
    assert all(torch.equal(full["model"][k], cut["model"][k]) for k in full["model"])
    assert [r["train_loss"] for r in full["history"]] == [r["train_loss"] for r in cut["history"]]


# ---- --config fast / demo ---------------------------------------------------------------------------------------
def schedule_lr(base: float, step: int, total: int) -> float:
    """The recipes' schedule as their comment states it: linear warm-up over the first 25 % of the steps, then a
    cosine down to 0."""
    warm = max(1, round(0.25 * total))
    if step < warm:
        return base * (step + 1) / warm
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / (total - warm))))


# fastcnn needs at least 9×9 inputs: the fast recipes train on digits upscaled to 16×16
SMALL_DIGITS = ("data.name=digits", "data.image_size=16")


@pytest.mark.parametrize(
    ("recipe", "sets"),
    [("fast", (*SMALL_DIGITS, "train.epochs=10")), ("fast94", SMALL_DIGITS), ("demo", ("data.name=digits",))],
)
def test_builtin_recipe_reaches_the_trainers_optimizer_and_schedule(tmp_path, monkeypatch, cli, recipe, sets):
    import cnnkit.tasks

    captured = []
    monkeypatch.setattr(cnnkit.tasks, "train", lambda cfg, **_: captured.append(cfg) or tmp_path / "never")
    extra = [a for s in sets for a in ("--set", s)]
    code, _, err = cli("train", "--config", recipe, *extra, "--quiet")
    assert code == 0, err
    (cfg,) = captured
    want = yaml.safe_load((RECIPES / f"{recipe}.yaml").read_text())
    epochs = 10 if "train.epochs=10" in sets else want["train"]["epochs"]  # --set beats the recipe
    assert (cfg.model.name, cfg.data.augment, cfg.train.epochs) == (want["model"]["name"], want["data"]["augment"],
                                                                     epochs)  # fmt: skip
    trainer = Trainer(cfg, tmp_path / "run", Classify(), **QUIET)
    assert trainer.task.objective.label_smoothing == want["train"].get("label_smoothing", 0.0)
    o = want["optim"]
    assert o["name"] == "sgd" and isinstance(trainer.opt, torch.optim.SGD)
    decay, no_decay = trainer.opt.param_groups
    assert decay["initial_lr"] == o["lr"] and decay["momentum"] == o["momentum"]
    assert decay["nesterov"] is o["nesterov"] and decay["weight_decay"] == o["weight_decay"]
    assert no_decay["weight_decay"] == 0.0
    assert trainer.batch_size == want["train"]["batch_size"]
    total = math.ceil(len(trainer.data.train) / want["train"]["batch_size"]) * epochs
    assert o["schedule"] == "onecycle"
    lrs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stepping the schedule without optimizer steps
        for _ in range(total):
            lrs.append(trainer.opt.param_groups[0]["lr"])
            trainer.sched.step()
    assert lrs == pytest.approx([schedule_lr(o["lr"], s, total) for s in range(total)], abs=1e-12)
    assert max(lrs) == pytest.approx(o["lr"]) and lrs[-1] < 0.01 * o["lr"]


# ---- 16-bit images ----------------------------------------------------------------------------------------------
def save_16bit(path: Path, bright_left: bool, seed: int) -> Path:
    """A 16-bit grayscale PNG (every value above 255) whose class is which half is bright."""
    rng = np.random.default_rng(seed)
    a = rng.integers(1000, 3000, size=(16, 16))
    half = (slice(None), slice(0, 8) if bright_left else slice(8, 16))
    a[half] += 40_000
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a.astype(np.uint16)).save(path)
    return path


def test_16bit_png_folder_trains_and_predicts(tmp_path, cli):
    from cnnkit.data.images import load_image

    for i in range(8):
        save_16bit(tmp_path / "d" / "left" / f"{i}.png", True, i)
        save_16bit(tmp_path / "d" / "right" / f"{i}.png", False, 100 + i)
    probe = save_16bit(tmp_path / "probe.png", True, 999)
    with Image.open(probe) as im:
        assert im.mode.startswith("I;16")  # really a 16-bit file
    t = load_image(probe, 1, None)[0].float()  # [H, W] 0–255: the pattern survives (not clipped to all-white)
    assert t.min() == 0 and t.max() == 255
    assert t[:, :8].mean() > 200 and t[:, 8:].mean() < 50
    code, _, err = cli("train", "--data", tmp_path / "d", "--image-size", "16", "--epochs", "1", "--quiet",
                       "--out", tmp_path / "run", "--set", "train.report=false")  # fmt: skip
    assert code == 0, err
    card = json.loads((tmp_path / "run" / "model.json").read_text())
    assert card["classes"] == ["left", "right"] and card["input"]["channels"] == 1
    code, out, err = cli("predict", tmp_path / "run", probe, "--json")
    assert code == 0, err
    (pred,) = json.loads(out)
    assert pred["image"] == str(probe)
    assert pred["label"] in ("left", "right") and {name for name, _ in pred["topk"]} == {"left", "right"}
    assert sum(prob for _, prob in pred["topk"]) == pytest.approx(1, abs=1e-4)


# ---- --split and --ensemble-mode --------------------------------------------------------------------------------
@pytest.fixture
def run_copy(digits_run, tmp_path) -> Path:
    """A private copy of the shared digits run (evaluate writes eval_<split>.json into the run)."""
    return Path(shutil.copytree(digits_run, tmp_path / "a"))


def test_split_flag_chooses_the_evaluated_split(run_copy, tmp_path, cli):
    members = json.loads((run_copy / SPLIT).read_text())  # the split recorded when the run was trained
    metrics = json.loads((run_copy / "metrics.json").read_text())
    n = {}
    for split in ("val", "test"):
        code, _, err = cli("evaluate", run_copy, "--split", split, "--json", tmp_path / f"{split}.json")
        assert code == 0, err
        m = json.loads((tmp_path / f"{split}.json").read_text())
        assert m["split"] == split
        n[split] = m["n"]
        assert n[split] == len(members[split])
    assert n["val"] != n["test"]
    assert n["val"] + n["test"] + len(members["train"]) == 1797  # scikit-learn's digits: 1,797 images
    # the val split is the one that selected the best epoch (trained under autocast, evaluated in fp32: ±3 images)
    val = json.loads((tmp_path / "val.json").read_text())
    assert val["top1_accuracy"] == pytest.approx(metrics["val_accuracy"], abs=3 / n["val"] + 1e-9)


def test_ensemble_modes_average_probabilities_or_logits(run_copy, tmp_path, cli):
    second = Path(shutil.copytree(run_copy, tmp_path / "b"))  # a second, different model: perturbed weights
    weights = load_file(second / "model.safetensors")
    gen = torch.Generator().manual_seed(0)
    for k, v in weights.items():
        if v.is_floating_point() and "running" not in k:
            weights[k] = v + 0.5 * v.std().nan_to_num(0.1) * torch.randn(v.shape, generator=gen)
    save_file(weights, second / "model.safetensors")

    def probs(*args: str | Path, name: str) -> np.ndarray:
        code, _, err = cli("evaluate", *args, "--predictions", tmp_path / f"{name}.npz")
        assert code == 0, err
        with np.load(tmp_path / f"{name}.npz") as z:
            return z["probs"]

    pa, pb = probs(run_copy, name="a"), probs(second, name="b")
    assert np.abs(pa - pb).max() > 0.1  # the members disagree, so the modes can differ
    ens_prob = probs(run_copy, second, "--ensemble", "--ensemble-mode", "prob", name="prob")
    ens_logit = probs(run_copy, second, "--ensemble", "--ensemble-mode", "logit", name="logit")
    # by hand: prob = the mean probability; logit = softmax of the mean logit (log p = logit − logsumexp)
    np.testing.assert_allclose(ens_prob, (pa + pb) / 2, atol=1e-5)
    mean_logit = (np.log(pa) + np.log(pb)) / 2
    hand = np.exp(mean_logit - mean_logit.max(1, keepdims=True))
    np.testing.assert_allclose(ens_logit, hand / hand.sum(1, keepdims=True), atol=1e-5)
    assert np.abs(ens_prob - ens_logit).max() > 1e-3  # the two modes are different combinations


# ---- kernels --json ---------------------------------------------------------------------------------------------
def outer(a, b):
    return [[x * y for y in b] for x in a]


G5 = outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1])  # the notes' Gaussian 5×5 is the binomial outer product, over 256
DELTA5 = [[int(i == j == 2) for j in range(5)] for i in range(5)]
# The lecture notes' table (seed 004) and the Sobel and "X" filters (seeds 000, 002), as exact fractions.
KERNELS = {
    "identity": (1, [[0, 0, 0], [0, 1, 0], [0, 0, 0]]),
    "edge1": (1, [[1, 0, -1], [0, 0, 0], [-1, 0, 1]]),
    "edge2": (1, [[0, 1, 0], [1, -4, 1], [0, 1, 0]]),
    "edge3": (1, [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]]),
    "sharpen": (1, [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]),
    "box_blur": (Fraction(1, 9), [[1] * 3] * 3),
    "gaussian3": (Fraction(1, 16), outer([1, 2, 1], [1, 2, 1])),
    "gaussian5": (Fraction(1, 256), G5),
    # unsharp masking, amount 1: 2·image − blur = (512·δ − G5) / 256
    "unsharp5": (Fraction(1, 256), [[512 * d - g for d, g in zip(dr, gr)] for dr, gr in zip(DELTA5, G5)]),
    "sobel_x": (1, outer([1, 2, 1], [-1, 0, 1])),
    "sobel_y": (1, outer([-1, 0, 1], [1, 2, 1])),
    "x_diag": (1, [[1, -1, -1], [-1, 1, -1], [-1, -1, 1]]),
    "x_center": (1, [[1, -1, 1], [-1, 1, -1], [1, -1, 1]]),
    "x_antidiag": (1, [[-1, -1, 1], [-1, 1, -1], [1, -1, -1]]),
}


def test_kernels_json_lists_every_named_kernel_with_its_values(cli):
    code, out, err = cli("kernels", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["name"] for r in rows] == list(KERNELS)
    for r in rows:
        scale, values = KERNELS[r["name"]]
        got = [[Fraction(r["scale"]) * v for v in row] for row in r["values"]]
        assert got == [[Fraction(scale) * v for v in row] for row in values], r["name"]
        assert r["description"]


# ---- explain RUN for a run trained from a YAML layer list -------------------------------------------------------
def test_explain_a_run_trained_from_a_layer_list_from_another_directory(tmp_path, monkeypatch, cli):
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    elsewhere.mkdir()
    make_folder(here / "data", per_class=6)
    shutil.copy(SPECS / "lenet5.yaml", here / "mynet.yaml")
    monkeypatch.chdir(here)
    code, _, err = cli("train", "--model", "mynet.yaml", "--data", "data", "--epochs", "1", "--out", "run",
                       "--quiet", "--set", "train.report=false")  # fmt: skip
    assert code == 0, err
    (here / "mynet.yaml").unlink()  # the run must not depend on the file it was trained from
    monkeypatch.chdir(elsewhere)
    code, out, err = cli("explain", "../here/run", "--json")
    assert code == 0, err
    s = json.loads(out)
    # LeNet-5 with a 2-class output: c1 6·(25+1) + c3 16·(6·25+1) + c5 120·(16·25+1) + f6 84·(120+1) + 2·(84+1)
    params = 6 * 26 + 16 * 151 + 120 * 401 + 84 * 121 + 2 * 85
    assert s["totals"]["params"] == params == 61_026
    assert s["input"] == [1, 28, 28] and s["output"][-1] == 2
    params_of = {r["name"].rsplit(".", 1)[-1]: r["params"] for r in s["layers"]}  # the spec's own layer names
    assert [params_of[n] for n in ("c1", "s2", "c3", "s4", "c5", "f6")] == [156, 0, 2416, 0, 48_120, 10_164]
    assert s["layers"][-1]["kind"] == "Linear" and s["layers"][-1]["params"] == 2 * 85  # the head: 84 -> 2
    code, out, err = cli("explain", "../here/run")  # the table, too
    assert code == 0, err
    assert "61,026" in out
