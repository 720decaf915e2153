"""``history.csv``: one row per epoch, with the columns the task's figures need."""

from __future__ import annotations

import csv
import io

FIRST, LAST = ("epoch", "train_loss"), ("lr", "epoch_time_s", "images_per_s")


def columns(rows: list[dict[str, float]]) -> list[str]:
    """epoch, train_loss, the other train_* and val_* figures in the order the task gives them, lr, timings."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    middle = [k for k in keys if k not in FIRST + LAST]
    middle.sort(key=lambda k: not k.startswith("train_"))  # stable: train_* first, then val_*
    return [*FIRST, *middle, *LAST]


def history_csv(rows: list[dict[str, float]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns(rows), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def epoch_figures(row: dict[str, float], shown: dict[str, str] | None = None) -> str:
    """The terminal line's figures, ``loss 0.41  train acc 0.85  val acc 0.86 …``: the task's ``shown``
    (column -> label), else every train_* and val_* column under its own name."""
    shown = shown or {k: k.replace("_", " ") for k in columns([row]) if k not in ("epoch", *LAST)}
    return "  ".join(f"{label} {row[k]:.4f}" for k, label in shown.items() if k in row)
