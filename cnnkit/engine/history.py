"""``history.csv``: one row per epoch."""

from __future__ import annotations

import csv
import io

HISTORY_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_macro_f1", "lr",
                   "epoch_time_s", "images_per_s")  # fmt: skip


def history_csv(rows: list[dict[str, float]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
