"""Few-shot transfer on Fashion-MNIST: from scratch vs frozen ImageNet features vs fine-tuning, at 10/50/100 shots.

For each number of labelled training images per class (the same images for every method; the smaller sets are
subsets of the larger), test accuracy on a fixed, class-balanced subset of the Fashion-MNIST test set of

(a) the default model (smallcnn, 28×28) trained from scratch,
(b) frozen pretrained EfficientNet-Lite0 features (images upscaled to ``--size``) + logistic regression,
(c) EfficientNet-Lite0 fine-tuned from its ImageNet weights (``--size``; head-only epochs first, then all layers
    with the body at a tenth of the head's learning rate), its BatchNorm statistics updated as usual, and
(d) the same with ``model.freeze_bn=true``: BatchNorm keeps the ImageNet statistics while the weights train.

Every method sees only the k-shot training images: no validation split (the trainer then keeps the epoch with
the lowest training loss). Wall time covers everything from image files to test predictions (data loading,
training or feature extraction, evaluation on the test subset). Prints one Markdown table.
Usage: ``python benchmarks/transfer_few_shot.py [--shots 10 50 100] [--test 2000] [--size 96]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cnnkit.config import DataConfig, TrainConfig, build_config
from cnnkit.data import load_data
from cnnkit.data.datasets import labels_of
from cnnkit.evaluate import evaluate
from cnnkit.evaluate.metrics import classification_metrics
from cnnkit.models import create_model
from cnnkit.runtime import Normalize
from cnnkit.tasks import train
from cnnkit.transfer import class_log_probs, extract_features, fit_linear

EPOCHS = {10: 30, 50: 12, 100: 8}  # about 3,000 / 6,000 / 8,000 training images seen


def balanced_indices(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """``per_class`` indices of every class, seeded; a prefix of the same permutation for smaller counts."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)])


def write_split(root: Path, images: torch.Tensor, labels: np.ndarray, classes: list[str]) -> None:
    """uint8 images Tensor[N, 1, 28, 28] -> ROOT/CLASS/i.png."""
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = root / classes[label].replace("/", "_")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0].numpy(), "L").save(folder / f"{i}.png")


def make_folders(tmp: Path, shots: list[int], n_test: int, seed: int) -> dict[int, Path]:
    """One dataset folder per shot count, ``train/`` with k images per class and the shared ``test/`` subset."""
    fm = load_data(DataConfig(name="fashion-mnist", val_fraction=0.0))
    train_labels, test_labels = labels_of(fm.train), labels_of(fm.test)
    test_idx = balanced_indices(test_labels, n_test // len(fm.classes), seed)
    write_split(tmp / "test", fm.test.images[test_idx], test_labels[test_idx], fm.classes)
    roots = {}
    for k in shots:
        idx = balanced_indices(train_labels, k, seed + 1)
        roots[k] = tmp / f"shots{k}"
        write_split(roots[k] / "train", fm.train.images[idx], train_labels[idx], fm.classes)
        (roots[k] / "test").symlink_to(tmp / "test", target_is_directory=True)
    return roots


def trained_run_accuracy(root: Path, out: Path, sets: list[str]) -> float:
    """Train with the ``sets`` overrides on ``root`` (no validation split), then the run's test top-1 accuracy."""
    common = [f"data.name={root}", "data.val_fraction=0", "data.augment=clothes", "train.batch_size=32",
              "train.precision=fp32", "train.tensorboard=false", f"train.out={out}"]  # fmt: skip
    if hasattr(TrainConfig(), "report"):
        common.append("train.report=false")
    run = train(build_config(sets=common + sets), log=lambda *_: None, progress=False)
    return evaluate([run], split="test").metrics()["top1_accuracy"]


def probe_accuracy(root: Path, size: int, seed: int) -> float:
    """Frozen Lite0 features of the training and test images, logistic regression, test top-1 accuracy."""
    data = load_data(DataConfig(name=str(root), val_fraction=0.0), seed=seed, image_size=(size, size))
    model = create_model("efficientnet_lite0", pretrained=True, in_chans=data.in_chans)
    model.to(memory_format=torch.channels_last)
    normalize = Normalize(model.mean, model.std, torch.device("cpu"), channels_last=True)
    (x_train, y_train), (x_test, y_test) = (extract_features(model, s, normalize) for s in (data.train, data.test))
    clf = fit_linear("logistic", x_train, y_train, seed=seed)
    log_probs = class_log_probs(clf, x_test, len(data.classes))
    return classification_metrics(log_probs, torch.from_numpy(y_test))["top1_accuracy"]


def timed(fn, *args) -> tuple[float, float]:
    t = time.perf_counter()
    acc = fn(*args)
    return acc, time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shots", type=int, nargs="+", default=[10, 50, 100])
    p.add_argument("--test", type=int, default=2000, help="class-balanced test images")
    p.add_argument("--size", type=int, default=96, help="Lite0 input side (Fashion-MNIST's 28 px upscaled)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        roots = make_folders(Path(tmp), args.shots, args.test, args.seed)
        for k, root in roots.items():
            epochs = EPOCHS.get(k, max(8, 3000 // (10 * k)))
            finetune = ["model.name=efficientnet_lite0", "model.pretrained=true", f"data.image_size={args.size}",
                        f"train.epochs={epochs}", f"train.head_epochs={max(1, epochs // 5)}", "optim.lr=0.02",
                        "optim.backbone_lr_mult=0.1"]  # fmt: skip
            results = [
                timed(trained_run_accuracy, root, Path(tmp) / f"scratch{k}", [f"train.epochs={epochs}"]),
                timed(probe_accuracy, root, args.size, args.seed),
                timed(trained_run_accuracy, root, Path(tmp) / f"finetune{k}", finetune),
                timed(trained_run_accuracy, root, Path(tmp) / f"finetune_bn{k}", [*finetune, "model.freeze_bn=true"]),
            ]
            rows.append((k, epochs, results))
            print(f"{k} shots: " + ", ".join(f"{a:.4f} in {s:.0f} s" for a, s in results), flush=True)
    print_table(rows, args)


def print_table(rows: list, args: argparse.Namespace) -> None:
    print(f"\nFashion-MNIST, {args.test} test images (class-balanced, fixed), seed {args.seed}, "
          f"{torch.get_num_threads()} threads, fp32\n")  # fmt: skip
    print("| images per class | epochs | (a) smallcnn from scratch, 28 px | "
          f"(b) frozen Lite0 features + logistic, {args.size} px | (c) Lite0 fine-tuned, {args.size} px | "
          f"(d) (c) with freeze_bn, {args.size} px |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|")
    for k, epochs, results in rows:
        cells = " | ".join(f"{acc:.1%} ({secs:.0f} s)" for acc, secs in results)
        print(f"| {k} | {epochs} | {cells} |")
    print("\ntest accuracy (wall time from image files to test predictions)")


if __name__ == "__main__":
    main()
