"""``report.html`` and ``report.md`` for a run: curves, confusion heat map, per-class table, top losses, config.

The PNG plots go to ``RUN/report_files/``; both documents link them by relative path, so the run directory
can be moved or zipped whole. The report is built as a list of blocks rendered twice (Markdown and HTML).
"""

from __future__ import annotations

import csv
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..data.splits import describe_split
from ..engine.plots import plot_curves
from ..io import write_text
from ..runcard import read_card
from .analysis import write_gallery
from .ensemble import evaluate
from .plots import plot_confusion
from .tables import Table, confused_table, fmt, per_class_table

FILES = "report_files"
Block = tuple[str, Any]  # ("h2", text) | ("p", text) | ("table", Table) | ("img", (src, alt)) | ("pre", text)


def write_report(
    run_dir: str | Path,
    *,
    data: str | None = None,
    split: str = "test",
    data_dir: str | None = None,
    extra: Sequence[Block] = (),
) -> Path:
    """Evaluate the run on ``split`` and write ``report.html``, ``report.md`` and their PNGs into ``run_dir``.

    Args:
        run_dir: a run directory written by ``cnnkit train`` (needs model.json and weights; history.csv,
            config.yaml and metrics.json are used when present).
        data, split, data_dir: what to evaluate on, as for ``cnnkit evaluate`` (default: the run's test split).
        extra: blocks of sections made by higher layers (their images under ``FILES``), placed before the
            configuration.

    Returns:
        The path of ``report.html`` (``report.md`` is next to it).
    """
    run_dir = Path(run_dir)
    evaluation = evaluate([run_dir], data, split, data_dir)
    m = evaluation.metrics()
    blocks = _overview(run_dir, m) + training_blocks(run_dir)
    if m["n"]:
        write_gallery(evaluation, run_dir / FILES / "top_losses.png")
        blocks += _evaluation(run_dir, m)
    else:
        blocks.append(("p", f"Nothing to evaluate ({describe_split(m['split'], m['data'])}: no images)."))
    blocks += [*extra, *config_blocks(run_dir)]
    write_text(run_dir / "report.md", render_markdown(blocks))
    return write_text(run_dir / "report.html", render_html(blocks, f"cnnkit report: {run_dir.name}"))


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _overview(run_dir: Path, m: dict[str, Any]) -> list[Block]:
    card, trained = read_card(run_dir), _read_json(run_dir / "metrics.json")
    inp = card.input
    rows = [
        ["model", card.model],
        ["trained on", card.data or "?"],
        ["classes", ", ".join(card.classes)],
        ["input", f"{inp.channels} × {inp.height} × {inp.width}"],
        ["epochs (best)", f"{trained.get('epochs', '?')} ({trained.get('best_epoch', '?')})"],
        ["best validation accuracy", fmt(trained.get("val_accuracy"))],
    ]
    if m["n"]:
        rows += [
            ["evaluated on", f"{describe_split(m['split'], m['data'])}: {m['n']} images"],
            ["top-1 accuracy / error", f"{fmt(m['top1_accuracy'])} / {fmt(m['top1_error'])}"],
            [f"top-{m['top5_k']} accuracy / error", f"{fmt(m['top5_accuracy'])} / {fmt(m['top5_error'])}"],
            ["loss (cross-entropy)", fmt(m["loss"])],
            ["macro F1 / weighted F1", f"{fmt(m['macro']['f1'])} / {fmt(m['weighted']['f1'])}"],
            ["macro ROC-AUC (one-vs-rest)", fmt(m["macro"]["roc_auc"])],
        ]
    return [("h1", f"Report: {run_dir.name}"), ("table", (["", ""], rows))]


def training_blocks(run_dir: Path) -> list[Block]:
    history = run_dir / "history.csv"
    if not history.exists():
        (run_dir / FILES / "curves.png").unlink(missing_ok=True)  # never leave a stale plot from an earlier report
        return [("h2", "Training curves"), ("p", "No history.csv in the run directory.")]
    with open(history, newline="") as f:
        rows = [{k: float(v) if v not in ("", None) else float("nan") for k, v in r.items()} for r in csv.DictReader(f)]
    plot_curves(rows, run_dir / FILES / "curves.png", title=f"{run_dir.name}: training curves")
    return [("h2", "Training curves"), ("img", (f"{FILES}/curves.png", "loss and accuracy per epoch"))]


def _evaluation(run_dir: Path, m: dict[str, Any]) -> list[Block]:
    split = f"{describe_split(m['split'], m['data'])} ({m['n']} images)"
    plot_confusion(
        m["confusion"]["counts"],
        list(m["per_class"]),
        run_dir / FILES / "confusion.png",
        title=f"confusion matrix, {describe_split(m['split'])}",
    )
    blocks: list[Block] = [
        ("h2", "Confusion matrix"),
        ("p", f"Rows: true class; columns: predicted class; colour: fraction of the true class; {split}."),
        ("img", (f"{FILES}/confusion.png", "confusion matrix heat map")),
        ("h2", "Per-class results"),
        (
            "p",
            "Classes with no images in the split have recall, F1 and ROC-AUC n/a and are left out of macro averages.",
        ),
        ("table", per_class_table(m)),
    ]
    if m["most_confused"]:
        blocks += [("h2", "Most confused pairs"), ("table", confused_table(m))]
    return [
        *blocks,
        ("h2", "Top losses"),
        ("p", "The images the model is most wrong about: predicted class and probability, true class and probability."),
        ("img", (f"{FILES}/top_losses.png", "top-loss gallery")),
    ]


def config_blocks(run_dir: Path) -> list[Block]:
    cfg = run_dir / "config.yaml"
    return [("h2", "Configuration"), ("pre", cfg.read_text() if cfg.exists() else "(no config.yaml)")]


def render_markdown(blocks: list[Block]) -> str:
    out = []
    for kind, value in blocks:
        if kind in ("h1", "h2"):
            out.append(f"{'#' * int(kind[1])} {value}")
        elif kind == "p":
            out.append(value)
        elif kind == "img":
            out.append(f"![{value[1]}]({value[0]})")
        elif kind == "pre":
            out.append(f"```yaml\n{value.rstrip()}\n```")
        else:
            out.append(_markdown_table(value))
    return "\n\n".join(out) + "\n"


def _markdown_table(table: Table) -> str:
    headers, rows = table

    def cells(row: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"

    align = ["---"] + ["---:"] * (len(headers) - 1)
    return "\n".join([cells(headers), "| " + " | ".join(align) + " |", *(cells(r) for r in rows)])


def render_html(blocks: list[Block], title: str) -> str:
    e = html.escape
    body = []
    for kind, value in blocks:
        if kind in ("h1", "h2", "p", "pre"):
            body.append(f"<{kind}>{e(value)}</{kind}>")
        elif kind == "img":
            body.append(f'<img src="{e(value[0])}" alt="{e(value[1])}">')
        else:
            headers, rows = value
            head = "".join(f"<th>{e(h)}</th>" for h in headers)
            trs = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>")
    return _HTML.format(title=e(title), body="\n".join(body))


_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px}}
td+td,th+th{{text-align:right}}img{{max-width:100%}}pre{{background:#f6f6f6;padding:1em}}</style></head>
<body>
{body}
</body></html>
"""
