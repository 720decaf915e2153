"""Image-folder datasets: layouts, splits, colour modes, and bad files that stop or are skipped."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cnnkit.config import DataConfig
from cnnkit.data import load_data
from cnnkit.data.images import load_image
from cnnkit.errors import CnnkitError
from tests.conftest import make_folder, make_image


def test_class_folders_give_seeded_stratified_splits(tmp_path):
    make_folder(tmp_path, classes=("a", "b", "c"), per_class=20)
    cfg = DataConfig(name=str(tmp_path), val_fraction=0.2, test_fraction=0.25)
    d1, d2 = load_data(cfg, seed=3, image_size=(8, 8)), load_data(cfg, seed=3, image_size=(8, 8))
    assert d1.classes == ["a", "b", "c"] and d1.in_chans == 1
    assert (len(d1.train), len(d1.val), len(d1.test)) == (36, 9, 15)
    assert np.bincount(d1.test.labels.numpy()).tolist() == [5, 5, 5]  # stratified
    assert np.bincount(d1.val.labels.numpy()).tolist() == [3, 3, 3]
    assert tuple(d1.train.images.shape[1:]) == (1, 8, 8)
    assert d1.train.images.equal(d2.train.images)  # seeded


def test_given_train_val_test_split(tmp_path):
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        make_folder(tmp_path / split, per_class=n)
    d = load_data(DataConfig(name=str(tmp_path)), image_size=(8, 8))
    assert (len(d.train), len(d.val), len(d.test)) == (12, 4, 6)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P"])
def test_colour_modes_convert(tmp_path, mode):
    p = make_image(tmp_path / f"x.{'png'}", 100, mode)
    for chans in (1, 3):
        t = load_image(p, chans, (5, 7))
        assert t.shape == (chans, 5, 7) and t.dtype.is_floating_point is False


def test_transparent_pixels_become_white(tmp_path):
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    assert load_image(tmp_path / "clear.png", 3, None).min() == 255


def test_rgb_folder_gives_three_channels(tmp_path):
    make_folder(tmp_path / "d", per_class=4)
    make_image(tmp_path / "d" / "cat" / "colour.png", 90, "RGB")
    assert load_data(DataConfig(name=str(tmp_path / "d")), image_size=(8, 8)).in_chans == 3


@pytest.mark.parametrize("kind", ["text", "truncated"])
def test_bad_file_stops_with_its_name(tmp_path, kind):
    make_folder(tmp_path, per_class=6)
    bad = tmp_path / "dog" / "bad.png"
    if kind == "text":
        bad.write_text("not an image")
    else:
        data = (tmp_path / "dog" / "0.png").read_bytes()
        make_image(bad, 50, size=(64, 64))
        bad.write_bytes(bad.read_bytes()[: len(data) // 2])
    with pytest.raises(CnnkitError, match="bad.png") as e:
        load_data(DataConfig(name=str(tmp_path)), image_size=(8, 8))
    assert "--skip-bad" in str(e.value)


def test_skip_bad_lists_skipped_files(tmp_path, cli):
    make_folder(tmp_path / "d", per_class=8)
    (tmp_path / "d" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    code, out, _ = cli(
        "train",
        "--data",
        tmp_path / "d",
        "--image-size",
        "8",
        "--epochs",
        "1",
        "--skip-bad",
        "--out",
        tmp_path / "run",
        "--quiet",
    )
    assert code == 0
    assert "broken.jpg" in out
    assert "broken.jpg" in (tmp_path / "run" / "skipped_files.txt").read_text()


def test_decompression_bomb_refused_without_raising_the_limit(tmp_path, monkeypatch):
    make_image(tmp_path / "big.png", 10, size=(64, 64))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64×64 = 4096 pixels is now "too many"
    with pytest.raises(CnnkitError, match="decompression bomb"):
        load_image(tmp_path / "big.png", 1, None)
    assert Image.MAX_IMAGE_PIXELS == 1000


def test_empty_class_folder(tmp_path):
    make_folder(tmp_path, per_class=3)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CnnkitError, match="empty folder"):
        load_data(DataConfig(name=str(tmp_path)), image_size=(8, 8))


def test_no_class_folders(tmp_path):
    (tmp_path / "loose.png").write_bytes(b"")
    with pytest.raises(CnnkitError, match="one sub-folder per class"):
        load_data(DataConfig(name=str(tmp_path)), image_size=(8, 8))


def test_only_bad_images(tmp_path):
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        (tmp_path / c / "x.png").write_text("nope")
    with pytest.raises(CnnkitError, match="at least one readable image"):
        load_data(DataConfig(name=str(tmp_path), skip_bad=True, val_fraction=0, test_fraction=0), image_size=(8, 8))


def test_on_demand_decoding_when_over_the_memory_budget(tmp_path, monkeypatch):
    from cnnkit.data import folder

    make_folder(tmp_path, per_class=6)
    monkeypatch.setattr(folder, "MEMORY_BUDGET", 10)
    d = load_data(DataConfig(name=str(tmp_path)), image_size=(8, 8))
    assert isinstance(d.train, folder.ImageFiles)
    x, y = d.train[0]
    assert x.shape == (1, 8, 8) and y in (0, 1)


@pytest.mark.parametrize("names", [("training", "validation", "testing"), ("train", "valid", "test"),
                                   ("Training", "Validation", "Testing"), ("TRAIN", "VAL", "TEST")])  # fmt: skip
def test_split_folders_named_as_other_tools_name_them(tmp_path, names):
    """The MNIST PNG sets' training/ and testing/, Roboflow's valid/, Kaggle's capitalised copies: splits, not two or
    three classes."""
    for split, n in zip(names, (6, 2, 3)):
        make_folder(tmp_path / split, per_class=n)
    d = load_data(DataConfig(name=str(tmp_path)), image_size=(8, 8))
    assert d.classes == ["cat", "dog"] and (len(d.train), len(d.val), len(d.test)) == (12, 4, 6)


def test_what_macos_and_windows_leave_in_folders_is_not_data(tmp_path):
    make_folder(tmp_path, classes=("a", "b"), per_class=5)
    (tmp_path / "__MACOSX" / "a").mkdir(parents=True)  # an unzipped macOS archive's resource forks
    (tmp_path / "__MACOSX" / "a" / "._0.png").write_bytes(b"\x00\x05\x16\x07 not an image")
    (tmp_path / "a" / "._0.png").write_bytes(b"\x00\x05\x16\x07 not an image")
    (tmp_path / "a" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0 not an image")
    (tmp_path / "b" / "desktop.ini").write_text("[.ShellClassInfo]\n")
    d = load_data(DataConfig(name=str(tmp_path), val_fraction=0.2, test_fraction=0.2), image_size=(8, 8))
    assert d.classes == ["a", "b"] and len(d.train) + len(d.val) + len(d.test) == 10 and not d.skipped


def test_one_class_is_refused_before_decoding_and_a_wrapping_folder_is_named(tmp_path, cli):
    make_folder(tmp_path / "zip" / "flowers" / "train", classes=("rose", "tulip"), per_class=3)
    code, _, err = cli("train", "--data", tmp_path / "zip", "--epochs", "1", "--out", tmp_path / "run")
    assert code == 2 and "found 1 (flowers)" in err and f"pass --data {tmp_path / 'zip' / 'flowers'}" in err
    make_folder(tmp_path / "one", classes=("rose",), per_class=3)
    (tmp_path / "one" / "rose" / "9.png").write_bytes(b"not an image: decoding it would fail first")
    code, _, err = cli("train", "--data", tmp_path / "one", "--epochs", "1", "--out", tmp_path / "run")
    assert code == 2 and "found 1 (rose)" in err and "add a folder per class" in err
