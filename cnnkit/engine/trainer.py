"""The training loop: data -> model -> epochs of mini-batch SGD -> a run directory that predicts on its own.

A run directory holds ``model.safetensors`` (the best weights on the validation split), ``train_state.pt``
(the last weights and where training stands, in one atomic file, for an exact ``--resume``), ``model.json``
(everything needed to rebuild and predict), ``config.yaml``, ``history.csv``, ``metrics.json``, ``curves.png``
and, once training ends, the report. Model selection and early stopping use the validation split only; the
test split is evaluated for the report after training and never chooses anything.
"""

from __future__ import annotations

import math
import os
import random
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .. import __version__
from ..config import Config, dump_yaml, from_dict, load_yaml
from ..data import NAMED, DataSplits
from ..errors import CnnkitError
from ..io import write_json, write_text
from ..runcard import SPLIT, InputSpec, RunCard, read_card, write_card
from ..runtime import Normalize, autocast, batches, choose_precision, resolve_device, seed_everything
from . import distributed
from .checkpoint import load_state, save_state, save_weights, state_dict_for_saving
from .freeze import FreezePlan, is_pretrained, optimizer_groups, pretrained_fields
from .history import epoch_figures, history_csv
from .init import init_weights
from .optim import build_optimizer, build_scheduler, l1_penalty, weight_params
from .rundir import check_not_inside, claim
from .task import Task


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


def keep_spec(model_name: str, run_dir: Path) -> str:
    """A run trained from a layer-list YAML spec carries a copy (``model_spec.yaml``), so it loads anywhere."""
    if model_name.endswith((".yaml", ".yml")):
        from ..models.spec import resolve_spec_path

        write_text(run_dir / "model_spec.yaml", resolve_spec_path(model_name).read_text())
        return "model_spec.yaml"
    return model_name


class Trainer:
    """Holds everything one run needs; :meth:`fit` runs the epochs and writes the run directory."""

    def __init__(self, cfg: Config, run_dir: Path, task: Task, log=print, progress: bool | None = None) -> None:
        self.cfg, self.run_dir, self.task, self.progress = cfg, run_dir, task, progress
        cfg.model.name = cfg.model.name or task.default_model
        self.device = resolve_device(cfg.train.device)
        self.dist = distributed.setup(self.device.type)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        self.log = log if self.dist.is_main else (lambda *_: None)
        seed_everything(cfg.train.seed)
        self.dtype, self.precision_reason = choose_precision(cfg.train.precision, self.device)
        self.data = task.load_data(cfg)
        if len(self.data.train) == 0:
            raise CnnkitError(f"expected training images in {self.data.source!r}, found none")
        self.build_model()
        self.build_optimisation()
        self.epoch, self.step_in_epoch, self.partial = 0, 0, {}
        self.best, self.best_epoch, self.stale, self.history = -math.inf, 0, 0, []
        self.skipped_steps, self.tb, self.resumed = 0, None, False

    def build_model(self) -> None:
        cfg = self.cfg
        self.model = self.task.build_model(cfg, self.data)
        if not is_pretrained(cfg):
            init_weights(self.model, cfg.model.init)
        self.freeze = FreezePlan.from_config(self.model, cfg, self.dist.enabled)
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
        self.opt = build_optimizer(self.model, cfg.optim, optimizer_groups(self.model, cfg))
        self.sched = build_scheduler(self.opt, cfg.optim, self.steps_per_epoch, cfg.train.epochs)
        self.task.setup(cfg, self.data, self.model)
        self.l1_params = weight_params(self.model) if cfg.optim.l1 else []
        fp16 = self.dtype == torch.float16
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.monitor = cfg.train.monitor or self.task.default_monitor
        if self.monitor not in self.task.monitors:
            raise CnnkitError(
                f"expected train.monitor one of {', '.join(self.task.monitors)} for the {self.task.name} task,"
                f" found {self.monitor!r}"
            )
        if cfg.train.on_nonfinite not in ("stop", "skip"):
            raise CnnkitError(f"expected train.on_nonfinite stop or skip, found {cfg.train.on_nonfinite!r}")

    # ---- one epoch -------------------------------------------------------------------------------------------
    def train_epoch(self) -> dict[str, float]:
        cfg = self.cfg.train
        self.net.train()
        self.freeze.apply(self.model, self.epoch)  # head-only epochs first; frozen BatchNorm stays in eval mode
        st = self.partial or {"seen": 0, "loss_sum": 0.0, "stats": {}, "seconds": 0.0,
                              "lr": self.opt.param_groups[0]["lr"]}  # fmt: skip
        t0 = time.perf_counter() - st["seconds"]
        seed = cfg.seed * 100_003 + self.epoch
        sampler = getattr(self.task, "epoch_order", None)  # a task's own batch composition, seeded like ours
        own = sampler(self.data.train, self.batch_size, seed) if sampler is not None else None
        order = batches(self.data.train, self.batch_size, shuffle=True, seed=seed, order=own,
                        num_workers=self.cfg.data.num_workers, skip=self.step_in_epoch,
                        shard=lambda o: distributed.shard(o, self.dist))  # fmt: skip
        bar = tqdm(order, total=self.steps_per_epoch, initial=self.step_in_epoch, unit="batch", leave=False,
                   desc=f"epoch {self.epoch + 1}/{cfg.epochs}", disable=self.bar_disabled())  # fmt: skip
        for x, y in bar:
            if len(x) == 1 < self.batch_size:  # a lone last image: BatchNorm can't train on one 1×1 map; skip it
                continue
            loss, stats = self.step(x, y)
            self.step_in_epoch += 1
            st["seen"] += len(x)
            st["loss_sum"] += loss * len(x)
            for k, v in stats.items():
                st["stats"][k] = st["stats"].get(k, 0.0) + v
            st["seconds"] = time.perf_counter() - t0
            shown = {k: f"{v / st['seen']:.3f}" for k, v in list(st["stats"].items())[:2]}
            bar.set_postfix(loss=f"{st['loss_sum'] / st['seen']:.3f}", **shown,
                            img_s=f"{st['seen'] * self.dist.world / st['seconds']:.0f}")  # fmt: skip
            if cfg.save_every_steps and self.step_in_epoch % cfg.save_every_steps == 0:
                self.partial = st
                self.save_last()
        self.step_in_epoch, self.partial = 0, {}
        seen, seconds = st["seen"], st["seconds"]
        stats = {f"train_{k}": v / seen for k, v in st["stats"].items()}
        return {"train_loss": st["loss_sum"] / seen, **stats,
                "epoch_time_s": seconds, "images_per_s": seen * self.dist.world / seconds}  # fmt: skip

    def bar_disabled(self) -> bool | None:
        return True if not self.dist.is_main else (None if self.progress is None else not self.progress)

    def step(self, x: Tensor, y: Any) -> tuple[float, dict[str, float]]:
        """One optimizer step on a uint8 batch x: Tensor[B, C, H, W] with the task's targets y
        -> (loss, the task's per-batch statistics)."""
        x, target = self.task.prepare(x, y, self.normalize)
        with autocast(self.device, self.dtype):
            forward = getattr(self.task, "forward", None)  # detectors take the targets in training mode
            try:
                output = forward(self.net, x, target) if forward is not None else self.net(x)
            except ValueError as e:
                if "more than 1 value per channel" not in str(e):
                    raise
                raise CnnkitError(
                    f"expected BatchNorm to see more than one value per channel, found a batch of {len(x)} reaching a"
                    " 1×1 map; use a larger --batch-size or --image-size"
                ) from None
            loss, stats = self.task.loss(output, target)
        if self.l1_params:  # explicit L1 on the weights (the notes' L1 regularisation)
            loss = loss + self.cfg.optim.l1 * l1_penalty(self.l1_params).to(loss.device)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        clip = self.cfg.optim.clip_grad_norm or math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        # fp16: non-finite gradients are an overflow the GradScaler skips (and lowers its scale for); a non-finite
        # loss, or non-finite gradients without a scaler, is a real divergence: stop, or skip with on_nonfinite=skip
        if not torch.isfinite(loss) or not (self.scaler.is_enabled() or torch.isfinite(norm)):
            self.scaler.update()  # closes this step's unscale_, so the next step can unscale again
            self.non_finite(loss, norm)
            return float("nan"), {}
        self.scaler.step(self.opt)  # with a scaler: skipped when the gradients overflowed
        self.scaler.update()
        self.sched.step()
        return loss.item(), stats

    def non_finite(self, loss: Tensor, norm: Tensor) -> None:
        """Stop (default) or skip the step; never write non-finite weights."""
        what = f"loss {loss.item():.4g}, gradient norm {norm.item():.4g}"
        where = f"epoch {self.epoch + 1}, step {self.step_in_epoch + 1}"
        self.opt.zero_grad(set_to_none=True)
        self.skipped_steps += 1
        if self.cfg.train.on_nonfinite == "stop" or self.skipped_steps > 10:
            kept = (
                f"the last good checkpoint in {str(self.run_dir)!r} is kept"
                if (self.run_dir / "train_state.pt").exists()
                else "no checkpoint was written yet"
            )
            raise CnnkitError(
                f"expected a finite loss and gradient, found {what} at {where}; {kept} — lower the learning rate"
                f" (optim.lr={self.cfg.optim.lr}) or set optim.clip_grad_norm"
            )
        self.log(f"skipped a step with {what} at {where}")

    def validate(self) -> dict[str, float]:
        return self.task.validate(self.model, self.data.val, self.normalize, self.dtype)

    # ---- the run ---------------------------------------------------------------------------------------------
    def fit(self) -> Path:
        """Train the remaining epochs, checkpointing after each; returns the run directory."""
        if self.resumed:
            self.check_same_data()
        else:
            self.write_static_files()
        t_start = time.perf_counter()
        try:
            while self.epoch < self.cfg.train.epochs and not self.should_stop():
                lr = self.partial.get("lr", self.opt.param_groups[0]["lr"])  # the epoch's first rate, also on resume
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
            self.log(f"report: {self.task.report(self.run_dir)}")

    def should_stop(self) -> bool:
        patience = self.cfg.train.early_stop_patience
        if patience is not None and self.stale >= patience:
            self.log(f"early stopping: {self.monitor} has not improved for {patience} epoch(s)")
            return True
        return False

    def end_epoch(self, row: dict[str, float]) -> None:
        self.history.append(row)
        score = row[self.monitor] * self.task.monitors[self.monitor]
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
        figures = epoch_figures(row, self.task.epoch_line)
        self.log(
            f"epoch {row['epoch']}/{self.cfg.train.epochs}  {figures}  "
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
            "rng": self.rng_state(),
        }

    def rng_state(self) -> dict[str, Any]:
        """Every RNG the run draws from (the CUDA generators too on a GPU), for an exact resume."""
        rng = {"torch": torch.get_rng_state(), "numpy": _np_state(), "python": list(random.getstate()[1])}
        return {**rng, "cuda": torch.cuda.get_rng_state_all()} if self.device.type == "cuda" else rng

    def restore(self) -> None:
        """Continue from ``train_state.pt``: weights, optimizer, schedule, scaler, RNGs and position."""
        path = self.run_dir / "train_state.pt"
        state = load_state(path)
        missing = STATE_KEYS - set(state) if isinstance(state, dict) else STATE_KEYS
        if missing:
            found = f"no {', '.join(sorted(missing))}" if isinstance(state, dict) else f"a {type(state).__name__}"
            raise CnnkitError(f"expected a cnnkit training state in {str(path)!r}, found {found}; it can't be resumed")
        self.resumed = True
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise CnnkitError(
                f"expected the weights of {self.cfg.model.name} in {str(path)!r}, found another model's"
                f" ({str(e).splitlines()[0]}); it can't be resumed with this run's config.yaml"
            ) from None
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        for k in ("epoch", "step_in_epoch", "partial", "best", "best_epoch", "stale", "history"):
            setattr(self, k, state[k])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        np_state = state["rng"]["numpy"]
        np.random.set_state(("MT19937", np.array(np_state["key"], dtype=np.uint32), np_state["pos"]))
        random.setstate((3, tuple(state["rng"]["python"]), None))

    def run_card(self) -> RunCard:
        """What ``model.json`` records: enough to rebuild the model, preprocess an image and check the data."""
        cfg, data, model = self.cfg, self.data, self.model
        (h, w), c = data.image_size, data.in_chans
        pre = {"mode": "L" if c == 1 else "RGB", "resize": [h, w], "scale": 255.0}
        fields = self.task.card_fields(cfg, data)
        pre |= fields.pop("preprocessing", {})  # what the task adds to it (classify: the images' look)
        return RunCard(
            task=self.task.name, model=keep_spec(cfg.model.name, self.run_dir), num_classes=len(data.classes),
            classes=list(data.classes), input=InputSpec(c, h, w),
            preprocessing={**pre, "mean": list(model.mean), "std": list(model.std)},
            data=data.source, created=datetime.now().isoformat(timespec="seconds"), cnnkit_version=__version__,
            precision=str(self.dtype or torch.float32).replace("torch.", ""),
            precision_reason=self.precision_reason, split=self.split_summary, **self.freeze.card(),
            pretrained=pretrained_fields(model), **fields,
        )  # fmt: skip

    def write_static_files(self) -> None:
        if not self.dist.is_main:
            return
        write_text(self.run_dir / "config.yaml", dump_yaml(self.cfg))
        self.split_summary, members = self.data.split_record()
        write_json(self.run_dir / SPLIT, members)
        write_card(self.run_dir, self.run_card())
        if self.data.skipped:
            write_text(self.run_dir / "skipped_files.txt", "".join(f"{p}\t{r}\n" for p, r in self.data.skipped))
            for p, r in self.data.skipped:
                self.log(f"skipped {p}: {r}")
            self.log(f"{len(self.data.skipped)} bad file(s) skipped; listed in {self.run_dir / 'skipped_files.txt'}")

    def check_same_data(self) -> None:
        """Resume only on the examples the run started with (its card's split hashes)."""
        from ..data.splits import check_split

        card = read_card(self.run_dir)
        for split in ("train", "val"):
            check_split(card, self.run_dir, self.data, split, action="resume")

    def write_metrics(self, seconds: float) -> None:
        if not self.dist.is_main:
            return
        best = self.history[self.best_epoch - 1] if self.best_epoch else {}
        speeds = [r["images_per_s"] for r in self.history]
        write_json(self.run_dir / "metrics.json", {
            "best_epoch": self.best_epoch, "monitor": self.monitor,
            **{k: best.get(k) for k in self.task.monitors},
            "epochs": self.epoch, "train_time_s": round(seconds, 2),
            "images_per_s": round(float(np.mean(speeds)), 1) if speeds else None,
            "device": str(self.device), "processes": self.dist.world,
            "precision": str(self.dtype or torch.float32).replace("torch.", ""),
            "precision_reason": self.precision_reason,
            "threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(OpenMP default)"),
            "num_train": len(self.data.train), "num_val": len(self.data.val), "num_test": len(self.data.test),
        })  # fmt: skip


STATE_KEYS = frozenset({"model", "optimizer", "scheduler", "scaler", "epoch", "step_in_epoch", "partial", "best",
                        "best_epoch", "stale", "history", "rng"})  # fmt: skip


def _np_state() -> dict[str, Any]:
    _, key, pos, *_ = np.random.get_state()
    return {"key": key.tolist(), "pos": int(pos)}


def new_run_dir(cfg: Config) -> Path:
    """``train.out`` (must not already hold a run, nor lie inside the data), else ``runs/<model>-<data>-<time>``."""
    if cfg.train.out:
        out = Path(cfg.train.out)
        check_not_inside(out, cfg.data.name)
        return out
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{Path(cfg.model.name).stem}-{Path(cfg.data.name).name}-{stamp}"


def resolve_paths(cfg: Config) -> Config:
    """Store every path in the config resolved, so the run evaluates and resumes from any working directory."""
    d, m = cfg.data, cfg.model
    if d.name not in NAMED and Path(d.name).exists():
        d.name = str(Path(d.name).resolve())
    d.data_dir = str(Path(d.data_dir).resolve()) if d.data_dir else None
    m.weights = str(Path(m.weights).resolve()) if m.weights and Path(m.weights).exists() else m.weights
    if m.name and m.name.endswith((".yaml", ".yml")) and Path(m.name).exists():
        m.name = str(Path(m.name).resolve())
    return cfg


def train(cfg: Config, task: Task, log=print, progress: bool | None = None) -> Path:
    """Train a new run of ``task`` from ``cfg``; returns its run directory."""
    cfg.model.name = cfg.model.name or task.default_model
    resolve_paths(cfg)
    run_dir = new_run_dir(cfg)
    with claim(run_dir):
        if (run_dir / "model.json").exists():
            raise CnnkitError(
                f"expected a new run directory, found a run in {str(run_dir)!r}; choose another --out or --resume it"
            )
        return Trainer(cfg, run_dir, task, log, progress).fit()


def resume(run_dir: str | Path, task: Task, log=print, progress: bool | None = None, epochs: int | None = None) -> Path:
    """Continue an interrupted run from its last checkpoint, with the run's own ``config.yaml``, on the data it
    was trained on (a dataset that changed since is refused). ``epochs`` extends a run to that many epochs in
    all (the learning-rate schedule is recomputed for the new length)."""
    run_dir = Path(run_dir)
    if not (run_dir / "train_state.pt").exists():
        raise CnnkitError(f"expected a run directory with train_state.pt, found none in {str(run_dir)!r}")
    with claim(run_dir):
        cfg = from_dict(load_yaml(run_dir / "config.yaml"))
        if epochs is not None:
            cfg.train.epochs = epochs
        trainer = Trainer(cfg, run_dir, task, log, progress)
        trainer.restore()
        if trainer.epoch >= cfg.train.epochs:
            raise CnnkitError(
                f"expected an unfinished run, found {str(run_dir)!r} finished after {trainer.epoch} epochs; pass"
                f" --epochs N (more than {trainer.epoch}) with --resume to train it further"
            )
        if epochs is not None:
            write_text(run_dir / "config.yaml", dump_yaml(cfg))
        log(f"resuming {run_dir} at epoch {trainer.epoch + 1}, step {trainer.step_in_epoch}")
        return trainer.fit()
