"""The training loop: data -> model -> epochs of mini-batch SGD -> a run directory that predicts on its own.

A run directory holds ``model.safetensors`` (the best weights on the validation split), ``train_state.pt``
(the last weights and where training stands, in one atomic file, for an exact ``--resume``), ``model.json``
(everything needed to rebuild and predict), ``config.yaml``, ``history.csv``, ``metrics.json``, ``curves.png``
and, once training ends, the report. Model selection and early stopping use the validation split only; the
test split is evaluated for the report after training and never chooses anything.
"""

from __future__ import annotations

import inspect
import math
import random
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.transforms.v2 as v2
from torch import Tensor, nn
from torchmetrics.functional.classification import multiclass_f1_score
from tqdm.auto import tqdm

from .. import __version__, transfer
from ..config import Config, dump_yaml, from_dict, load_yaml
from ..data import NAMED, DataSplits, load_data
from ..data.augment import BatchAugment, preset
from ..errors import CnnkitError
from ..evaluate.metrics import classification_metrics, collect_logits
from ..models import create_model, model_info
from . import distributed
from .checkpoint import load_state, save_state, save_weights, state_dict_for_saving, write_json, write_text
from .history import history_csv
from .init import init_weights
from .loss import Objective, class_weights
from .optim import build_optimizer, build_scheduler
from .runtime import Normalize, autocast, batches, resolve_device, resolve_precision, seed_everything

MONITORS = {"val_accuracy": 1, "val_macro_f1": 1, "val_loss": -1}  # metric -> sign (higher is better)


def input_size(cfg: Config) -> tuple[int, int] | None:
    """(H, W) the images are resized to: ``data.image_size``, else the model's own size for folders and
    fixed-size models, else ``None`` (a named dataset's native size)."""
    if cfg.data.image_size:
        return (cfg.data.image_size, cfg.data.image_size)
    info = model_info(cfg.model.name)
    with torch.device("meta"):
        fixed = getattr(info.builder(), "fixed_input", False)
    return info.default_input[1:] if fixed or cfg.data.name not in NAMED else None


def model_kwargs(cfg: Config) -> dict[str, Any]:
    """Build options recorded in model.json: auxiliary classifiers on for models that have them."""
    params = inspect.signature(model_info(cfg.model.name).builder).parameters
    return {"aux_logits": True} if "aux_logits" in params and cfg.model.aux_weight > 0 else {}


def preflight(model: nn.Module, data: DataSplits) -> None:
    """One tiny forward pass, so a shape problem stops before training with a clear message."""
    x = torch.zeros(1, data.in_chans, *data.image_size)
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    except RuntimeError as e:
        raise CnnkitError(
            f"expected {type(model).__name__} to accept {data.in_chans}×{data.image_size[0]}×{data.image_size[1]}"
            f" inputs, found a shape error ({str(e).splitlines()[0]}); try --set data.image_size=N"
        ) from None
    finally:
        model.train(was)


def set_dropout(model: nn.Module, p: float | None) -> None:
    for m in model.modules():
        if p is not None and isinstance(m, nn.Dropout):
            m.p = p


def model_card(cfg: Config, model: nn.Module, data: DataSplits, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The contents of ``model.json``: enough to rebuild the model and preprocess an image for it."""
    h, w = data.image_size
    pre = {"mode": "L" if data.in_chans == 1 else "RGB", "resize": [h, w], "scale": 255.0}
    return {
        "cnnkit_version": __version__,
        "model": cfg.model.name,
        "model_kwargs": kwargs,
        "num_classes": len(data.classes),
        "classes": data.classes,
        "input": {"channels": data.in_chans, "height": h, "width": w},
        "preprocessing": {**pre, "mean": list(model.mean), "std": list(model.std)},
        "data": data.source,
        "created": datetime.now().isoformat(timespec="seconds"),
    }


def keep_spec(card: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """A run trained from a layer-list YAML spec carries a copy (``model_spec.yaml``), so it loads anywhere."""
    if card["model"].endswith((".yaml", ".yml")):
        from ..explain.spec import resolve_spec_path

        write_text(run_dir / "model_spec.yaml", resolve_spec_path(card["model"]).read_text())
        card = {**card, "model": "model_spec.yaml"}
    return card


class Trainer:
    """Holds everything one run needs; :meth:`fit` runs the epochs and writes the run directory."""

    def __init__(self, cfg: Config, run_dir: Path, log=print, progress: bool | None = None) -> None:
        self.cfg, self.run_dir, self.progress = cfg, run_dir, progress
        self.device = resolve_device(cfg.train.device)
        self.dist = distributed.setup(self.device.type)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        self.log = log if self.dist.is_main else (lambda *_: None)
        seed_everything(cfg.train.seed)
        self.dtype = resolve_precision(cfg.train.precision, self.device)
        self.data = load_data(cfg.data, seed=cfg.train.seed, image_size=input_size(cfg))
        if len(self.data.train) == 0:
            raise CnnkitError(f"expected training images in {self.data.source!r}, found none")
        self.build_model()
        self.build_optimisation()
        self.epoch, self.step_in_epoch, self.partial = 0, 0, {}
        self.best, self.best_epoch, self.stale, self.history = -math.inf, 0, 0, []
        self.skipped_steps, self.tb = 0, None

    def build_model(self) -> None:
        cfg = self.cfg
        self.kwargs = model_kwargs(cfg)
        self.model = create_model(cfg.model.name, num_classes=len(self.data.classes), in_chans=self.data.in_chans,
                                  pretrained=cfg.model.pretrained, weights=cfg.model.weights,
                                  **self.kwargs)  # fmt: skip
        if not transfer.is_pretrained(cfg):
            init_weights(self.model, cfg.model.init)
        self.freeze = transfer.FreezePlan.from_config(self.model, cfg, self.dist.enabled)
        self.freeze.apply(self.model)  # the groups frozen for the whole run
        set_dropout(self.model, cfg.model.dropout)
        preflight(self.model, self.data)
        self.model.to(self.device)
        if cfg.train.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.net = distributed.wrap(self.model, self.dist, self.device)
        self.normalize = Normalize(self.model.mean, self.model.std, self.device, cfg.train.channels_last)

    def build_optimisation(self) -> None:
        cfg, n = self.cfg, len(self.data.train)
        bs = cfg.train.batch_size
        if bs != "full" and (not isinstance(bs, int) or bs < 1):
            raise CnnkitError(f"expected train.batch_size a positive integer or 'full', found {bs!r}")
        self.batch_size = max(1, (n if bs == "full" else bs) // self.dist.world)
        self.steps_per_epoch = -(-(n // self.dist.world) // self.batch_size)
        self.opt = build_optimizer(self.model, cfg.optim, transfer.optimizer_groups(self.model, cfg))
        self.sched = build_scheduler(self.opt, cfg.optim, self.steps_per_epoch, cfg.train.epochs)
        weights = class_weights(self.data.train_labels(), len(self.data.classes), cfg.train.class_weights)
        self.objective = Objective(self.model, label_smoothing=cfg.train.label_smoothing, weight=weights,
                                   aux_weight=cfg.model.aux_weight, l1=cfg.optim.l1)  # fmt: skip
        self.augment = BatchAugment(preset(cfg.data.augment, self.data.image_size, cfg.data.name))
        self.mix = self.build_mix()
        fp16 = self.dtype == torch.float16
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=fp16)
        if cfg.train.monitor not in MONITORS:
            raise CnnkitError(f"expected train.monitor one of {', '.join(MONITORS)}, found {cfg.train.monitor!r}")
        if cfg.train.on_nonfinite not in ("stop", "skip"):
            raise CnnkitError(f"expected train.on_nonfinite stop or skip, found {cfg.train.on_nonfinite!r}")

    def build_mix(self) -> v2.Transform | None:
        k, d = len(self.data.classes), self.cfg.data
        choices = [t for t, p in ((v2.MixUp(num_classes=k), d.mixup), (v2.CutMix(num_classes=k), d.cutmix)) if p > 0]
        if not choices:
            return None
        return v2.RandomApply([v2.RandomChoice(choices)], p=min(1.0, d.mixup + d.cutmix))

    # ---- one epoch -------------------------------------------------------------------------------------------
    def train_epoch(self) -> dict[str, float]:
        cfg = self.cfg.train
        self.net.train()
        self.freeze.apply(self.model, self.epoch)  # head-only epochs first; frozen BatchNorm stays in eval mode
        st = self.partial or {"seen": 0, "loss_sum": 0.0, "correct": 0, "seconds": 0.0}
        t0 = time.perf_counter() - st["seconds"]
        order = batches(self.data.train, self.batch_size, shuffle=True, seed=cfg.seed * 100_003 + self.epoch,
                        num_workers=self.cfg.data.num_workers, skip=self.step_in_epoch,
                        shard=lambda o: distributed.shard(o, self.dist))  # fmt: skip
        bar = tqdm(order, total=self.steps_per_epoch, initial=self.step_in_epoch, unit="batch", leave=False,
                   desc=f"epoch {self.epoch + 1}/{cfg.epochs}", disable=self.bar_disabled())  # fmt: skip
        for x, y in bar:
            loss, correct = self.step(x, y)
            self.step_in_epoch += 1
            st["seen"] += len(y)
            st["loss_sum"] += loss * len(y)
            st["correct"] += correct
            st["seconds"] = time.perf_counter() - t0
            bar.set_postfix(loss=f"{st['loss_sum'] / st['seen']:.3f}", acc=f"{st['correct'] / st['seen']:.3f}",
                            img_s=f"{st['seen'] * self.dist.world / st['seconds']:.0f}")  # fmt: skip
            if cfg.save_every_steps and self.step_in_epoch % cfg.save_every_steps == 0:
                self.partial = st
                self.save_last()
        self.step_in_epoch, self.partial = 0, {}
        seen, seconds = st["seen"], st["seconds"]
        return {"train_loss": st["loss_sum"] / seen, "train_accuracy": st["correct"] / seen,
                "epoch_time_s": seconds, "images_per_s": seen * self.dist.world / seconds}  # fmt: skip

    def bar_disabled(self) -> bool | None:
        return True if not self.dist.is_main else (None if self.progress is None else not self.progress)

    def step(self, x: Tensor, y: Tensor) -> tuple[float, int]:
        """One optimizer step on a uint8 batch x: Tensor[B, C, H, W], y: Tensor[B] -> (loss, correct count)."""
        x, target = self.normalize(self.augment(x)), y.to(self.device)
        if self.mix is not None:
            x, target = self.mix(x, target)  # soft targets Tensor[B, K]
        with autocast(self.device, self.dtype):
            loss, logits = self.objective(self.net(x), target)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        clip = self.cfg.optim.clip_grad_norm or math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        if not (torch.isfinite(loss) and torch.isfinite(norm)):
            self.non_finite(loss, norm)
            return float("nan"), 0
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        return loss.item(), int((logits.argmax(1).cpu() == y).sum())

    def non_finite(self, loss: Tensor, norm: Tensor) -> None:
        """Stop (default) or skip the step; never write non-finite weights."""
        what = f"loss {loss.item():.4g}, gradient norm {norm.item():.4g}"
        where = f"epoch {self.epoch + 1}, step {self.step_in_epoch + 1}"
        self.opt.zero_grad(set_to_none=True)
        self.skipped_steps += 1
        if self.cfg.train.on_nonfinite == "stop" or self.skipped_steps > 10:
            raise CnnkitError(
                f"expected a finite loss and gradient, found {what} at {where}; the last good checkpoint in"
                f" {str(self.run_dir)!r} is kept — lower the learning rate (optim.lr={self.cfg.optim.lr}) or set"
                " optim.clip_grad_norm"
            )
        self.log(f"skipped a step with {what} at {where}")

    def validate(self) -> dict[str, float]:
        logits, labels = collect_logits(self.model, self.data.val, self.normalize, dtype=self.dtype)
        if len(labels) == 0:
            return {"val_loss": math.nan, "val_accuracy": math.nan, "val_macro_f1": math.nan}
        m = classification_metrics(logits, labels)
        f1 = multiclass_f1_score(logits, labels, num_classes=logits.shape[1], average="macro").item()
        return {"val_loss": m["loss"], "val_accuracy": m["top1_accuracy"], "val_macro_f1": f1}

    # ---- the run ---------------------------------------------------------------------------------------------
    def fit(self) -> Path:
        """Train the remaining epochs, checkpointing after each; returns the run directory."""
        self.write_static_files()
        t_start = time.perf_counter()
        try:
            while self.epoch < self.cfg.train.epochs and not self.should_stop():
                lr = self.opt.param_groups[0]["lr"]
                row = {"epoch": self.epoch + 1, "lr": lr, **self.train_epoch(), **self.validate()}
                self.epoch += 1
                self.end_epoch(row)
            self.write_metrics(time.perf_counter() - t_start)
            self.write_report()
        finally:
            distributed.teardown(self.dist)
        return self.run_dir

    def write_report(self) -> None:
        """The run's report (evaluated on the test split after training; never used to select anything)."""
        if self.dist.is_main and self.cfg.train.report and len(self.data.test):
            from ..evaluate.report import write_report

            self.log(f"report: {write_report(self.run_dir)}")

    def should_stop(self) -> bool:
        patience = self.cfg.train.early_stop_patience
        if patience is not None and self.stale >= patience:
            self.log(f"early stopping: {self.cfg.train.monitor} has not improved for {patience} epoch(s)")
            return True
        return False

    def end_epoch(self, row: dict[str, float]) -> None:
        self.history.append(row)
        score = row[self.cfg.train.monitor] * MONITORS[self.cfg.train.monitor]
        if math.isnan(score):
            score = -row["train_loss"]
        improved = score > self.best
        self.best, self.best_epoch, self.stale = (score, self.epoch, 0) if improved else (self.best, self.best_epoch,
                                                                                         self.stale + 1)  # fmt: skip
        if self.dist.is_main:
            if improved:
                save_weights(self.model, self.run_dir / "model.safetensors", {"epoch": str(self.epoch)})
            self.save_last()
            write_text(self.run_dir / "history.csv", history_csv(self.history))
            self.write_plots()
        self.log(
            f"epoch {row['epoch']}/{self.cfg.train.epochs}  loss {row['train_loss']:.4f}  train acc "
            f"{row['train_accuracy']:.4f}  val acc {row['val_accuracy']:.4f}  val loss {row['val_loss']:.4f}  "
            f"{row['images_per_s']:.0f} img/s  {row['epoch_time_s']:.1f}s{'  *best' if improved else ''}"
        )

    def save_last(self) -> None:
        """``train_state.pt``: last weights, optimizer, schedule, RNGs and position, in one atomic file."""
        if self.dist.is_main:
            save_state(self.state(), self.run_dir / "train_state.pt")

    def write_plots(self) -> None:
        from .plots import plot_curves

        plot_curves(
            self.history, self.run_dir / "curves.png", f"{self.cfg.model.name} on {Path(self.cfg.data.name).name}"
        )
        self.tensorboard(self.history[-1])

    def tensorboard(self, row: dict[str, float]) -> None:
        if not self.cfg.train.tensorboard:
            return
        if self.tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # the tensorboard package is optional
                self.cfg.train.tensorboard = False
                return
            self.tb = SummaryWriter(str(self.run_dir / "tensorboard"))
        for k, v in row.items():
            if k != "epoch":
                self.tb.add_scalar(k, v, int(row["epoch"]))
        self.tb.flush()

    # ---- state ----------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "model": state_dict_for_saving(self.model),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "partial": dict(self.partial),
            "best": self.best,
            "best_epoch": self.best_epoch,
            "stale": self.stale,
            "history": self.history,
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "numpy": _np_state(), "python": list(random.getstate()[1])},
        }

    def restore(self) -> None:
        """Continue from ``train_state.pt``: weights, optimizer, schedule, scaler, RNGs and position."""
        state = load_state(self.run_dir / "train_state.pt")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        for k in ("epoch", "step_in_epoch", "partial", "best", "best_epoch", "stale", "history"):
            setattr(self, k, state[k])
        torch.set_rng_state(state["rng"]["torch"])
        np_state = state["rng"]["numpy"]
        np.random.set_state(("MT19937", np.array(np_state["key"], dtype=np.uint32), np_state["pos"]))
        random.setstate((3, tuple(state["rng"]["python"]), None))

    def write_static_files(self) -> None:
        if not self.dist.is_main:
            return
        write_text(self.run_dir / "config.yaml", dump_yaml(self.cfg))
        card = keep_spec(model_card(self.cfg, self.model, self.data, self.kwargs), self.run_dir)
        write_json(self.run_dir / "model.json", {**card, **transfer.model_card_fields(self.model, self.freeze)})
        if self.data.skipped:
            write_text(self.run_dir / "skipped_files.txt", "".join(f"{p}\t{r}\n" for p, r in self.data.skipped))
            for p, r in self.data.skipped:
                self.log(f"skipped {p}: {r}")
            self.log(f"{len(self.data.skipped)} bad file(s) skipped; listed in {self.run_dir / 'skipped_files.txt'}")

    def write_metrics(self, seconds: float) -> None:
        if not self.dist.is_main:
            return
        best = self.history[self.best_epoch - 1] if self.best_epoch else {}
        speeds = [r["images_per_s"] for r in self.history]
        write_json(self.run_dir / "metrics.json", {
            "best_epoch": self.best_epoch, "monitor": self.cfg.train.monitor,
            **{k: best.get(k) for k in ("val_accuracy", "val_loss", "val_macro_f1")},
            "epochs": self.epoch, "train_time_s": round(seconds, 2),
            "images_per_s": round(float(np.mean(speeds)), 1) if speeds else None,
            "device": str(self.device), "processes": self.dist.world,
            "precision": str(self.dtype or torch.float32).replace("torch.", ""),
            "num_train": len(self.data.train), "num_val": len(self.data.val), "num_test": len(self.data.test),
        })  # fmt: skip


def _np_state() -> dict[str, Any]:
    _, key, pos, *_ = np.random.get_state()
    return {"key": key.tolist(), "pos": int(pos)}


def new_run_dir(cfg: Config) -> Path:
    """``train.out`` (must not already hold a run), else ``runs/<model>-<data>-<timestamp>``."""
    if cfg.train.out:
        out = Path(cfg.train.out)
        if (out / "model.json").exists():
            raise CnnkitError(
                f"expected a new run directory, found a run in {str(out)!r}; choose another --out or --resume it"
            )
        return out
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{Path(cfg.model.name).stem}-{Path(cfg.data.name).name}-{stamp}"


def train(cfg: Config, log=print, progress: bool | None = None) -> Path:
    """Train a new run from ``cfg``; returns its run directory."""
    run_dir = new_run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    return Trainer(cfg, run_dir, log, progress).fit()


def resume(run_dir: str | Path, log=print, progress: bool | None = None) -> Path:
    """Continue an interrupted run from its last checkpoint, with the run's own ``config.yaml``."""
    run_dir = Path(run_dir)
    if not (run_dir / "train_state.pt").exists():
        raise CnnkitError(f"expected a run directory with train_state.pt, found none in {str(run_dir)!r}")
    trainer = Trainer(from_dict(load_yaml(run_dir / "config.yaml")), run_dir, log, progress)
    trainer.restore()
    log(f"resuming {run_dir} at epoch {trainer.epoch + 1}, step {trainer.step_in_epoch}")
    return trainer.fit()
