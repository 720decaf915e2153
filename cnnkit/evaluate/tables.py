"""Metrics as tables of strings (headers, rows), shared by the terminal output and the Markdown/HTML report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Table = tuple[list[str], list[list[str]]]

SUMMARY_HEADERS = ["model", "top-1 accuracy", "top-1 error", "top-5 error", "loss", "macro F1", "macro ROC-AUC"]


def fmt(value: float | None, digits: int = 4) -> str:
    """A metric for a reader: fixed decimals, "n/a" when undefined."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def summary_row(name: str, m: dict[str, Any]) -> list[str]:
    return [
        name,
        fmt(m["top1_accuracy"]),
        fmt(m["top1_error"]),
        fmt(m["top5_error"]),
        fmt(m["loss"]),
        fmt(m["macro"]["f1"]),
        fmt(m["macro"]["roc_auc"]),
    ]


def summary_table(metrics: dict[str, Any]) -> Table:
    """One row per evaluated model (each member, "+ flip TTA" variants, the ensemble)."""
    rows = []
    entries = metrics.get("members", [metrics])
    for entry in entries:
        rows.append(summary_row(entry["run"], entry))
        if "tta" in entry:
            rows.append(summary_row(f"{entry['run']} + flip TTA", entry["tta"]))
    if "ensemble" in metrics:
        name = f"ensemble of {len(entries)} ({metrics['mode']} average)"
        rows.append(summary_row(name, metrics["ensemble"]))
        if "tta" in metrics["ensemble"]:
            rows.append(summary_row(f"{name} + flip TTA", metrics["ensemble"]["tta"]))
    return SUMMARY_HEADERS, rows


def per_class_table(m: dict[str, Any]) -> Table:
    """Precision, recall, F1, support and ROC-AUC per class, then the macro and weighted averages."""
    headers = ["class", "precision", "recall", "F1", "support", "ROC-AUC"]
    rows = [
        [name, fmt(c["precision"]), fmt(c["recall"]), fmt(c["f1"]), str(c["support"]), fmt(c["roc_auc"])]
        for name, c in m["per_class"].items()
    ]
    mac, wei = m["macro"], m["weighted"]
    rows.append(["macro average", fmt(mac["precision"]), fmt(mac["recall"]), fmt(mac["f1"]), "", fmt(mac["roc_auc"])])
    rows.append(["weighted average", fmt(wei["precision"]), fmt(wei["recall"]), fmt(wei["f1"]), str(m["n"]), ""])
    return headers, rows


def confused_table(m: dict[str, Any]) -> Table:
    headers = ["true class", "predicted as", "images", "share of the true class"]
    rows = [[p["true"], p["predicted"], str(p["count"]), f"{p['rate']:.1%}"] for p in m["most_confused"]]
    return headers, rows


def text_table(table: Table, indent: str = "  ") -> str:
    """Align columns for a terminal: the first and text columns left-aligned, numbers right-aligned."""
    headers, rows = table
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    numeric = [i > 0 and all(c[:1].isdigit() or c in ("", "n/a") for c in col) for i, col in enumerate(zip(*rows))]

    def line(cells: Sequence[str]) -> str:
        padded = [
            c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric or [False] * len(cells))
        ]
        return (indent + "  ".join(padded)).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])
