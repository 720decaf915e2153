"""Runs shared by the evaluation tests: two digits runs with different seeds and a small image-folder run."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnkit.cli import main
from tests.conftest import make_folder


def _train(out: Path, *args: str) -> Path:
    assert main(["train", *args, "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="session")
def seeded_runs(digits_run, tmp_path_factory) -> tuple[Path, Path]:
    """Two smallcnn runs on digits with seeds 1 (the shared ``digits_run``) and 2: their test splits differ."""
    return digits_run, _train(tmp_path_factory.mktemp("seeded") / "seed2", "--data", "digits", "--seed", "2")


@pytest.fixture(scope="session")
def folder_run(tmp_path_factory) -> Path:
    """A one-epoch run on ROOT/{cat,dog}/*.png at 8×8 (a folder dataset: examples have paths; flips allowed)."""
    root = tmp_path_factory.mktemp("folder")
    data = make_folder(root / "pets", classes=("cat", "dog"), per_class=15)
    return _train(root / "run", "--data", str(data), "--set", "data.image_size=8", "--seed", "0")
