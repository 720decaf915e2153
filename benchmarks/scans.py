"""Digits as a user's scans show them: how a digits run predicts ink on paper, with and without bringing the image
to the look of its data (``cnnkit.data.content``).

Trains a smallcnn on scikit-learn's digits (15 epochs, seconds), then predicts the run's 359 test digits three
ways: as they are in the dataset; as scans (negated to dark ink on grey paper, 12× larger, somewhere on a
200×160 sheet) brought to the data's look, as ``cnnkit predict`` does; and the same scans fed as they are. Prints
the three accuracies and writes a picture of eight scans beside what the model saw.

    .venv/bin/python benchmarks/scans.py [--out docs/images/scans.png]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

import cnnkit
from cnnkit.cli import main as cnnkit_main
from cnnkit.config import from_dict, load_yaml
from cnnkit.data import load_data


def scan(digit: np.ndarray, i: int) -> np.ndarray:
    """An 8×8 uint8 digit (bright on black) as a scanned page shows it: dark ink on grey paper, 12× larger,
    placed somewhere on a 200×160 sheet (the place moves with ``i``)."""
    big = np.asarray(Image.fromarray(255 - digit).resize((96, 96), Image.Resampling.BILINEAR))
    page = np.full((200, 160), 235, np.uint8)
    y, x = 20 + (i * 7) % 60, 10 + (i * 11) % 50
    page[y : y + 96, x : x + 96] = np.minimum(big, 235)
    return page


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="scans.png", help="the picture to write")
    a = p.parse_args()
    run = Path(tempfile.mkdtemp(prefix="scans-")) / "digits"
    assert cnnkit_main(["train", "--data", "digits", "--epochs", "15", "--out", str(run), "--quiet"]) == 0
    pred = cnnkit.load(run)
    cfg = from_dict(load_yaml(run / "config.yaml"))
    test = load_data(cfg.data, seed=cfg.train.seed).test  # the run's own test split (same seed)
    digits, labels = test.images[:, 0].numpy(), test.labels.numpy()
    scans = [scan(d, i) for i, d in enumerate(digits)]

    def accuracy(images: list[np.ndarray]) -> float:
        return float(np.mean([q.index for q in pred.predict(images)] == labels))

    original, fitted = accuracy(list(digits)), accuracy(scans)
    seen = [pred.to_tensor(s)[0].numpy() for s in scans[:8]]
    look, pred.content = pred.content, None
    as_they_are = accuracy(scans)
    print(f"{len(labels)} test digits of a 15-epoch digits run; the data's look: {look}")
    print(f"  as in the dataset: {original:.3f}")
    print(f"  as scans, brought to the data's look (cnnkit predict): {fitted:.3f}")
    print(f"  as scans, fed as they are: {as_they_are:.3f}")
    picture(scans[:8], seen, Path(a.out))
    print(f"wrote {a.out}")


def picture(scans: list[np.ndarray], seen: list[np.ndarray], out: Path) -> None:
    """Two rows: the scans, and the 8×8 images the model was given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(scans), figsize=(1.3 * len(scans), 3.0))
    for i, (s, t) in enumerate(zip(scans, seen)):
        axes[0, i].imshow(s, cmap="gray", vmin=0, vmax=255)
        axes[1, i].imshow(t, cmap="gray", vmin=0, vmax=255)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("the scan", fontsize=9)
    axes[1, 0].set_ylabel("what the\nmodel sees", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


if __name__ == "__main__":
    main()
