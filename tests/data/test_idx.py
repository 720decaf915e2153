"""IDX folders (MNIST's format) as their datasets ship them: MNIST's and Kaggle's file names, EMNIST's prefixes and
mapping, train-only folders; bad folders in one line; end to end through train, evaluate and predict."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from PIL import Image

from cnnkit.config import DataConfig
from cnnkit.data import load_data, native_size
from cnnkit.data.datasets import mirrorable
from cnnkit.errors import CnnkitError


def idx_bytes(a: np.ndarray) -> bytes:
    a = np.asarray(a, np.uint8)
    return bytes([0, 0, 8, a.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in a.shape) + a.tobytes()


def strokes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n 28×28 images of 4 classes: a bright bar whose position is the class, on black (handwriting's look)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 4
    images = rng.integers(0, 30, (n, 28, 28))
    for i, c in enumerate(labels):
        images[i, 4 + 5 * c : 8 + 5 * c, 6:22] = 230
    return images.astype(np.uint8), labels.astype(np.uint8)


def write(folder, name: str, a: np.ndarray, gz: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    raw = idx_bytes(a)
    (folder / (name + ".gz" if gz else name)).write_bytes(gzip.compress(raw) if gz else raw)


def mnist_folder(folder, names: tuple[str, str, str, str], gz: bool, n_train: int = 80, n_test: int = 20):
    """(train images, train labels, test images, test labels) under ``names``; test files only when both named."""
    (xi, yi), (xt, yt) = strokes(n_train, 0), strokes(n_test, 1)
    for name, a in zip(names, (xi, yi, xt, yt)):
        if name:
            write(folder, name, a, gz)
    return folder


MNIST = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
KAGGLE = ("train-images.idx3-ubyte", "train-labels.idx1-ubyte", "t10k-images.idx3-ubyte", "t10k-labels.idx1-ubyte")


@pytest.mark.parametrize(("names", "gz"), [(MNIST, True), (KAGGLE, False)])
def test_mnist_and_kaggle_file_names_open_at_their_own_size(tmp_path, names, gz):
    folder = mnist_folder(tmp_path / "mnist", names, gz)
    cfg = DataConfig(name=str(folder))
    data = load_data(cfg)
    assert native_size(str(folder)) and not native_size(str(tmp_path))
    assert data.classes == ["0", "1", "2", "3"] and data.in_chans == 1 and data.image_size == (28, 28)
    assert len(data.train) + len(data.val) == 80 and len(data.val) == 8 and len(data.test) == 20
    assert data.test.labels.tolist() == strokes(20, 1)[1].tolist()  # the t10k files are the test split, in order
    assert not data.hflip and not mirrorable(cfg)  # handwriting: never mirrored unless data.hflip says so


def test_a_train_only_folder_is_carved_and_emnist_names_its_classes(tmp_path):
    folder = mnist_folder(tmp_path / "gz", (*MNIST[:2], "", ""), gz=True, n_train=100)
    data = load_data(DataConfig(name=str(folder), test_fraction=0.2))
    assert (len(data.train) + len(data.val), len(data.test)) == (80, 20)

    emnist = tmp_path / "emnist"
    xi, yi = strokes(40, 0)
    write(emnist, "emnist-letters-train-images-idx3-ubyte", xi, gz=True)
    write(emnist, "emnist-letters-train-labels-idx1-ubyte", yi + 1, gz=True)  # EMNIST letters count from 1
    (emnist / "emnist-letters-mapping.txt").write_text("1 65 97\n2 66 98\n3 67 99\n4 68 100\n")
    assert load_data(DataConfig(name=str(emnist))).classes == ["0", "A", "B", "C", "D"]
    (emnist / "classes.txt").write_text("none\nalpha\nbeta\ngamma\ndelta\n")  # a list of names wins
    assert load_data(DataConfig(name=str(emnist))).classes == ["none", "alpha", "beta", "gamma", "delta"]
    (emnist / "classes.txt").write_text("none\nalpha\n")
    with pytest.raises(CnnkitError, match=r"expected at least 5 class names in .*classes.txt.*found 2"):
        load_data(DataConfig(name=str(emnist)))


def test_bad_idx_folders_are_one_line(tmp_path):
    two = mnist_folder(tmp_path / "two", MNIST, gz=True)
    write(two, "emnist-digits-train-images-idx3-ubyte", strokes(4, 0)[0], gz=True)
    write(two, "emnist-digits-train-labels-idx1-ubyte", strokes(4, 0)[1], gz=True)
    with pytest.raises(CnnkitError, match=r"expected one IDX dataset .* found 2 \(emnist-digits-, \(no prefix\)\)"):
        load_data(DataConfig(name=str(two)))
    alone = tmp_path / "alone"
    write(alone, "train-images-idx3-ubyte", strokes(4, 0)[0], gz=False)
    with pytest.raises(CnnkitError, match="expected train-labels-idx1-ubyte beside train-images-idx3-ubyte"):
        load_data(DataConfig(name=str(alone)))
    cut = mnist_folder(tmp_path / "cut", (*KAGGLE[:2], "", ""), gz=False)
    (cut / KAGGLE[0]).write_bytes((cut / KAGGLE[0]).read_bytes()[:-5])
    with pytest.raises(CnnkitError, match="truncated"):
        load_data(DataConfig(name=str(cut)))
    mismatch = mnist_folder(tmp_path / "mismatch", (*KAGGLE[:2], "", ""), gz=False)
    write(mismatch, KAGGLE[1], strokes(10, 0)[1], gz=False)
    with pytest.raises(CnnkitError, match=r"expected images \[N, H, W\] and N labels .* \[80, 28, 28\] and \[10\]"):
        load_data(DataConfig(name=str(mismatch)))


def test_train_evaluate_and_predict_on_an_idx_folder(cli, tmp_path):
    folder = mnist_folder(tmp_path / "mnist", KAGGLE, gz=False, n_train=160, n_test=40)
    run = tmp_path / "run"
    code, _, err = cli("train", "--data", folder, "--epochs", "4", "--batch-size", "16", "--out", run, "--quiet")
    assert code == 0, err
    card = json.loads((run / "model.json").read_text())
    assert card["classes"] == ["0", "1", "2", "3"] and card["input"]["height"] == 28
    code, out, err = cli("evaluate", run, "--json", tmp_path / "m.json")
    assert code == 0 and out.startswith(f"test split of {folder}: 40 images"), err
    assert json.loads((tmp_path / "m.json").read_text())["top1_accuracy"] > 0.5  # 4 classes: chance is 0.25
    image = tmp_path / "three.png"
    Image.fromarray(strokes(4, 7)[0][3]).save(image)
    code, out, err = cli("predict", run, image)
    assert code == 0 and f"{image}: 3 " in out, out + err
