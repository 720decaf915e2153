"""The verify run's report: the figures, the ROC curve (with the EER point and the FARs), the training curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..evaluate.report import FILES, config_blocks, render_html, render_markdown, training_blocks
from ..io import save_figure, write_text
from ..runcard import read_card


def plot_roc(m: dict[str, Any], path: Path) -> Path:
    """The ROC curve of the pairs (log FAR axis so 1e-3 and 1e-2 show), with AUC, EER and TAR@FAR marked."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4.2))
    ax = fig.subplots()
    fpr = [max(f, 1e-4) for f in m["fpr"]]
    ax.plot(fpr, m["tpr"], color="tab:blue", label=f"ROC, AUC {m['auc']:.3f}")
    chance = np.logspace(-4, 0, 200)  # TAR = FAR: a curve on the log axis (two end points would draw a chord)
    ax.plot(chance, chance, color="grey", linestyle=":", label="chance")
    ax.scatter([max(m["eer"], 1e-4)], [1 - m["eer"]], color="tab:red", zorder=3, label=f"EER {m['eer']:.3f}")
    for far, style in ((1e-3, "--"), (1e-2, "-.")):
        key = f"tar_at_far_{far:.0e}".replace("e-0", "e-")
        ax.axvline(far, color="tab:green", linestyle=style, label=f"FAR {far:g}: TAR {m[key]:.3f}")
    ax.set_xscale("log")
    ax.set_xlim(1e-4, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false accept rate (mismatched pairs called same)")
    ax.set_ylabel("true accept rate")
    ax.set_title(f"Verification ROC, {m['n_pairs']} {m['split']} pairs (unseen identities)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path)


def write_report(run_dir: Path, m: dict[str, Any]) -> Path:
    """``report.html`` and ``report.md`` from the figures of ``cnnkit.tasks.verify.evaluate_run``."""
    card = read_card(run_dir)
    grid, dim = card.task_fields.get("embedding_grid", 0), card.task_fields.get("embedding_dim")
    l2 = ", L2-normalised" if card.task_fields.get("pca_l2", True) else ""
    how = f"PCA of its {grid}×{grid}-pooled features{l2}" if grid else "trained projection, L2-normalised"
    rows = [["model", f"{card.model} + {dim}-d embedding ({how})"],
            ["loss", f"{card.task_fields.get('loss')} (margin {card.task_fields.get('margin')})"],
            ["trained on identities", ", ".join(card.task_fields.get("train_identities", []))],
            ["validated on identities (not trained on)", ", ".join(card.task_fields.get("val_identities", []))
             or "none: held-out images of the training identities"],
            ["tested on identities (never seen)", ", ".join(m["identities"])],
            [f"{m['split']} pairs", str(m["n_pairs"])], ["ROC AUC", f"{m['auc']:.4f}"], ["EER", f"{m['eer']:.4f}"],
            ["TAR @ FAR 1e-3", f"{m['tar_at_far_1e-3']:.4f}"], ["TAR @ FAR 1e-2", f"{m['tar_at_far_1e-2']:.4f}"],
            ["pair accuracy (threshold from validation pairs)", f"{m['accuracy']:.4f} at {m['threshold']:.4f}"],
            ["one-shot identification", f"{m['one_shot_accuracy']:.4f}"]]  # fmt: skip
    plot_roc(m, run_dir / FILES / "roc.png")
    blocks = [("h1", f"Report: {run_dir.name} (verification)"), ("table", (["", ""], rows)),
              ("h2", "ROC of the test pairs"), ("img", (f"{FILES}/roc.png", "ROC curve"))]  # fmt: skip
    blocks += training_blocks(run_dir) + config_blocks(run_dir)
    write_text(run_dir / "report.md", render_markdown(blocks))
    return write_text(run_dir / "report.html", render_html(blocks, f"cnnkit report: {run_dir.name}"))
