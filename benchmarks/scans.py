"""A dataset's test images as a user's scans or photos show them: how a grey run predicts dark-on-light pictures,
with and without bringing them to the look of its data (``cnnkit.data.content``).

Trains a smallcnn (digits: 15 epochs, seconds; Fashion-MNIST: ``--epochs``, 2 by default, minutes), then predicts
the run's test images (at most ``--limit``) three ways: as they are in the dataset; as pictures (negated to dark on
a light sheet, 12× larger, somewhere on a larger sheet: ink on paper, a garment on a table) brought to the data's
look, as ``cnnkit predict`` does; and the same pictures fed as they are. Prints the three accuracies and writes a
picture of eight of them beside what the model saw. Run it alone.

    .venv/bin/python benchmarks/scans.py [--data digits|fashion-mnist] [--out docs/images/scans.png]
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


def scan(image: np.ndarray, i: int) -> np.ndarray:
    """A uint8 image (bright on black, s × s) as a scan or photo shows it: dark on a light grey sheet, 12× larger,
    placed somewhere on a sheet 25 s × 20 s (the place moves with ``i``)."""
    s = image.shape[0]
    big = np.asarray(Image.fromarray(255 - image).resize((12 * s, 12 * s), Image.Resampling.BILINEAR))
    page = np.full((25 * s, 20 * s), 235, np.uint8)
    y, x = (20 + (i * 7) % 60) * s // 8, (10 + (i * 11) % 50) * s // 8
    page[y : y + 12 * s, x : x + 12 * s] = np.minimum(big, 235)
    return page


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="digits", choices=["digits", "fashion-mnist"])
    p.add_argument("--epochs", type=int, help="default: 15 for digits, 2 for Fashion-MNIST")
    p.add_argument("--limit", type=int, default=1000, help="test images at most")
    p.add_argument("--out", default="scans.png", help="the picture to write")
    a = p.parse_args()
    epochs = a.epochs or (15 if a.data == "digits" else 2)
    run = Path(tempfile.mkdtemp(prefix="scans-")) / a.data
    assert cnnkit_main(["train", "--data", a.data, "--epochs", str(epochs), "--out", str(run), "--quiet"]) == 0
    pred = cnnkit.load(run)
    cfg = from_dict(load_yaml(run / "config.yaml"))
    test = load_data(cfg.data, seed=cfg.train.seed).test  # the run's own test split (same seed)
    images, labels = test.images[: a.limit, 0].numpy(), test.labels[: a.limit].numpy()
    scans = [scan(im, i) for i, im in enumerate(images)]

    def accuracy(images: list[np.ndarray]) -> float:
        return float(np.mean([q.index for q in pred.predict(images)] == labels))

    original, fitted = accuracy(list(images)), accuracy(scans)
    seen = [pred.to_tensor(s)[0].numpy() for s in scans[:8]]
    look, pred.content = pred.content, None
    as_they_are = accuracy(scans)
    print(f"{len(labels)} test images of a {epochs}-epoch {a.data} run; the data's look: {look}")
    print(f"  as in the dataset: {original:.3f}")
    print(f"  as dark-on-light pictures, brought to the data's look (cnnkit predict): {fitted:.3f}")
    print(f"  as dark-on-light pictures, fed as they are: {as_they_are:.3f}")
    picture(scans[:8], seen, Path(a.out))
    print(f"wrote {a.out}")


def picture(scans: list[np.ndarray], seen: list[np.ndarray], out: Path) -> None:
    """Two rows: the scans, and the images the model was given (at its input size)."""
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
