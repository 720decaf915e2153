"""Training curves: loss and accuracy, train vs validation, one PNG per run (rewritten after each epoch)."""

from __future__ import annotations

from pathlib import Path

from ..io import save_figure


def plot_curves(history: list[dict[str, float]], path: str | Path, title: str = "") -> Path:
    """Write ``curves.png``: loss (left) and accuracy (right) per epoch, train and validation. A task without an
    accuracy shows its first other validation metric on the right (detection: ``val_map50``), train where it has
    one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    other = next((k[4:] for k in history[0] if k.startswith("val_") and k != "val_loss"), "loss")
    metric = "accuracy" if "val_accuracy" in history[0] else other
    for ax, key, name in ((ax_loss, "loss", "loss"), (ax_acc, metric, metric)):
        if f"train_{key}" in history[0]:
            ax.plot(epochs, [r[f"train_{key}"] for r in history], "o-", label="train")
        ax.plot(epochs, [r[f"val_{key}"] for r in history], "s-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(f"{name} per epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)
