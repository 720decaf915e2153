"""The training loop: data -> model -> SGD epochs -> a run directory that predicts on its own.

A run directory holds ``model.safetensors`` (best weights on the validation split), ``last.safetensors``
and ``train_state.pt`` (where training stands, for ``--resume``), ``model.json`` (everything needed to
rebuild and predict), ``config.yaml``, ``history.csv`` and ``metrics.json``. The test split is never
looked at here: model selection uses validation only.
"""

from __future__ import annotations

import csv
import io
import random
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .. import __version__
from ..config import Config, dump_yaml, from_dict
from ..data import NAMED, DataSplits, load_data
from ..errors import CnnkitError
from ..evaluate.metrics import classification_metrics, collect_logits
from ..models import create_model, model_info
from .checkpoint import load_state, load_weights, save_state, save_weights, write_json, write_text
from .optim import build_optimizer, build_scheduler
from .runtime import Normalize, autocast, batches, resolve_device, resolve_precision, seed_everything

HISTORY_COLUMNS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "lr",
    "epoch_time_s",
    "images_per_s",
)


def input_size(cfg: Config) -> tuple[int, int] | None:
    """(H, W) the images are resized to: ``data.image_size``, else the model's own size for folders and
    fixed-size models, else ``None`` (a named dataset's native size)."""
    if cfg.data.image_size:
        return (cfg.data.image_size, cfg.data.image_size)
    info = model_info(cfg.model.name)
    with torch.device("meta"):
        fixed = getattr(info.builder(), "fixed_input", False)
    return info.default_input[1:] if fixed or cfg.data.name not in NAMED else None


def preflight(model: nn.Module, data: DataSplits) -> None:
    """Run one tiny forward pass so a shape problem stops before training, with a clear message."""
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


def model_card(cfg: Config, model: nn.Module, data: DataSplits) -> dict[str, Any]:
    """The contents of ``model.json``: enough to rebuild the model and preprocess an image for it."""
    h, w = data.image_size
    return {
        "cnnkit_version": __version__,
        "model": cfg.model.name,
        "model_kwargs": {"dropout": cfg.model.dropout} if cfg.model.dropout is not None else {},
        "num_classes": len(data.classes),
        "classes": data.classes,
        "input": {"channels": data.in_chans, "height": h, "width": w},
        "preprocessing": {
            "mode": "L" if data.in_chans == 1 else "RGB",
            "resize": [h, w],
            "scale": 255.0,
            "mean": list(model.mean),
            "std": list(model.std),
        },
        "data": data.source,
        "created": datetime.now().isoformat(timespec="seconds"),
    }


class Trainer:
    """Holds everything one run needs; :meth:`fit` runs the epochs and writes the run directory."""

    def __init__(self, cfg: Config, run_dir: Path, log=print, progress: bool | None = None) -> None:
        self.cfg, self.run_dir, self.log, self.progress = cfg, run_dir, log, progress
        seed_everything(cfg.train.seed)
        self.device = resolve_device(cfg.train.device)
        self.dtype = resolve_precision(cfg.train.precision, self.device)
        self.data = load_data(cfg.data, seed=cfg.train.seed, image_size=input_size(cfg))
        if len(self.data.train) == 0:
            raise CnnkitError(f"expected training images in {self.data.source!r}, found none")
        self.model = create_model(
            cfg.model.name, num_classes=len(self.data.classes), in_chans=self.data.in_chans, dropout=cfg.model.dropout
        )
        preflight(self.model, self.data)
        self.model.to(self.device)
        if cfg.train.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.normalize = Normalize(self.model.mean, self.model.std, self.device, cfg.train.channels_last)
        self.steps_per_epoch = -(-len(self.data.train) // cfg.train.batch_size)
        self.opt = build_optimizer(self.model, cfg.optim)
        self.sched = build_scheduler(self.opt, cfg.optim, self.steps_per_epoch, cfg.train.epochs)
        self.epoch, self.best, self.best_epoch, self.history = 0, -1.0, 0, []

    # ---- one epoch -------------------------------------------------------------------------------------------
    def train_epoch(self) -> dict[str, float]:
        cfg, model = self.cfg.train, self.model
        model.train()
        seen, loss_sum, correct, t0 = 0, 0.0, 0, time.perf_counter()
        order = batches(
            self.data.train,
            cfg.batch_size,
            shuffle=True,
            seed=cfg.seed * 100_003 + self.epoch,
            num_workers=self.cfg.data.num_workers,
        )
        bar = tqdm(
            order,
            total=self.steps_per_epoch,
            desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
            unit="batch",
            leave=False,
            disable=None if self.progress is None else not self.progress,
        )
        for x, y in bar:
            loss, logits = self.step(self.normalize(x), y.to(self.device))
            seen += len(y)
            loss_sum += loss * len(y)
            correct += (logits.argmax(1).cpu() == y).sum().item()
            bar.set_postfix(
                loss=f"{loss_sum / seen:.3f}",
                acc=f"{correct / seen:.3f}",
                img_s=f"{seen / (time.perf_counter() - t0):.0f}",
            )
        dt = time.perf_counter() - t0
        return {
            "train_loss": loss_sum / seen,
            "train_accuracy": correct / seen,
            "epoch_time_s": dt,
            "images_per_s": seen / dt,
        }

    def step(self, x: Tensor, y: Tensor) -> tuple[float, Tensor]:
        """One SGD step on a normalised batch x: Tensor[B, C, H, W], y: Tensor[B] -> (loss, logits)."""
        with autocast(self.device, self.dtype):
            logits = self.model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=self.cfg.train.label_smoothing)
        if not torch.isfinite(loss):
            raise CnnkitError(
                f"expected a finite loss, found {loss.item()} at epoch {self.epoch + 1}; the last good checkpoint"
                f" in {str(self.run_dir)!r} is kept — lower the learning rate (optim.lr={self.cfg.optim.lr})"
            )
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        return loss.item(), logits.detach()

    def validate(self) -> dict[str, float]:
        logits, labels = collect_logits(self.model, self.data.val, self.normalize, dtype=self.dtype)
        m = classification_metrics(logits, labels)
        return {"val_loss": m.get("loss", float("nan")), "val_accuracy": m.get("top1_accuracy", float("nan"))}

    # ---- the run ---------------------------------------------------------------------------------------------
    def fit(self) -> Path:
        """Train the remaining epochs, checkpointing after each; returns the run directory."""
        self.write_static_files()
        t_start = time.perf_counter()
        while self.epoch < self.cfg.train.epochs:
            row = {
                "epoch": self.epoch + 1,
                "lr": self.opt.param_groups[0]["lr"],
                **self.train_epoch(),
                **self.validate(),
            }
            self.epoch += 1
            self.history.append(row)
            self.checkpoint(row)
            self.log(
                f"epoch {row['epoch']}/{self.cfg.train.epochs}  loss {row['train_loss']:.4f}  "
                f"train acc {row['train_accuracy']:.4f}  val acc {row['val_accuracy']:.4f}  "
                f"{row['images_per_s']:.0f} img/s  {row['epoch_time_s']:.1f}s"
            )
        self.write_metrics(time.perf_counter() - t_start)
        return self.run_dir

    def checkpoint(self, row: dict[str, float]) -> None:
        """Save last weights + state (and best weights if improved), then history; each write is atomic."""
        score = row["val_accuracy"] if not np.isnan(row["val_accuracy"]) else -row["train_loss"]
        meta = {"epoch": str(self.epoch)}
        if score > self.best:
            self.best, self.best_epoch = score, self.epoch
            save_weights(self.model, self.run_dir / "model.safetensors", meta)
        save_weights(self.model, self.run_dir / "last.safetensors", meta)
        save_state(self.state(), self.run_dir / "train_state.pt")
        write_text(self.run_dir / "history.csv", history_csv(self.history))

    def state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "numpy": _np_state(), "python": list(random.getstate()[1])},
        }

    def restore(self) -> None:
        """Continue from ``last.safetensors`` + ``train_state.pt`` in the run directory."""
        state = load_state(self.run_dir / "train_state.pt")
        meta = load_weights(self.model, self.run_dir / "last.safetensors")
        if int(meta.get("epoch", -1)) != state["epoch"]:
            raise CnnkitError(
                f"expected last.safetensors and train_state.pt from the same epoch in {str(self.run_dir)!r},"
                f" found epochs {meta.get('epoch')} and {state['epoch']}; the run was interrupted mid-save"
            )
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.epoch, self.best, self.best_epoch, self.history = (
            state["epoch"],
            state["best"],
            state["best_epoch"],
            state["history"],
        )
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(
            ("MT19937", np.array(state["rng"]["numpy"]["key"], dtype=np.uint32), state["rng"]["numpy"]["pos"])
        )
        random.setstate((3, tuple(state["rng"]["python"]), None))

    def write_static_files(self) -> None:
        write_text(self.run_dir / "config.yaml", dump_yaml(self.cfg))
        write_json(self.run_dir / "model.json", model_card(self.cfg, self.model, self.data))
        if self.data.skipped:
            write_text(self.run_dir / "skipped_files.txt", "".join(f"{p}\t{r}\n" for p, r in self.data.skipped))
            for p, r in self.data.skipped:
                self.log(f"skipped {p}: {r}")
            self.log(f"{len(self.data.skipped)} bad file(s) skipped; listed in {self.run_dir / 'skipped_files.txt'}")

    def write_metrics(self, seconds: float) -> None:
        best = self.history[self.best_epoch - 1] if self.best_epoch else {}
        write_json(
            self.run_dir / "metrics.json",
            {
                "best_epoch": self.best_epoch,
                "val_accuracy": best.get("val_accuracy"),
                "val_loss": best.get("val_loss"),
                "epochs": self.epoch,
                "train_time_s": round(seconds, 2),
                "images_per_s": round(float(np.mean([r["images_per_s"] for r in self.history])), 1)
                if self.history
                else None,
                "device": str(self.device),
                "precision": str(self.dtype or torch.float32).replace("torch.", ""),
                "num_train": len(self.data.train),
                "num_val": len(self.data.val),
                "num_test": len(self.data.test),
            },
        )


def _np_state() -> dict[str, Any]:
    _, key, pos, *_ = np.random.get_state()
    return {"key": key.tolist(), "pos": int(pos)}


def history_csv(rows: list[dict[str, float]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


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
    return Path("runs") / f"{cfg.model.name}-{Path(cfg.data.name).name}-{stamp}"


def train(cfg: Config, log=print, progress: bool | None = None) -> Path:
    """Train a new run from ``cfg``; returns its run directory."""
    run_dir = new_run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    return Trainer(cfg, run_dir, log, progress).fit()


def resume(run_dir: str | Path, log=print, progress: bool | None = None) -> Path:
    """Continue an interrupted run from its last checkpoint, with the run's own ``config.yaml``."""
    run_dir = Path(run_dir)
    import yaml

    cfg = from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").exists() else {})
    if not (run_dir / "train_state.pt").exists():
        raise CnnkitError(f"expected a run directory with train_state.pt, found none in {str(run_dir)!r}")
    trainer = Trainer(cfg, run_dir, log, progress)
    trainer.restore()
    log(f"resuming {run_dir} after epoch {trainer.epoch}")
    return trainer.fit()
