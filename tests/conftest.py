"""Shared fixtures: an in-process CLI runner, tiny image folders and one small trained run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnkit.cli import main


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tests use tiny tensors: one intra-op thread is as fast and doesn't collapse when the machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never touch the real ~/.cache/cnnkit or $CNNKIT_DATA from a test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("CNNKIT_DATA", raising=False)


@pytest.fixture
def cli(capsys):
    """Run ``cnnkit ARGS…`` in-process -> (exit status, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse's --help / --version / usage errors
            code = e.code if isinstance(e.code, int) else 0
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def make_image(path: Path, value: int, mode: str = "L", size: tuple[int, int] = (12, 12)) -> Path:
    """A small synthetic image whose pixel values encode its class (so a model can learn it)."""
    rng = np.random.default_rng(value)
    a = np.clip(rng.normal(value, 10, size=(size[1], size[0])), 0, 255).astype(np.uint8)
    if mode == "L":
        im = Image.fromarray(a, "L")
    elif mode == "RGB":
        im = Image.fromarray(np.stack([a, a, a], -1), "RGB")
    elif mode == "RGBA":
        im = Image.fromarray(np.stack([a, a, a, np.full_like(a, 255)], -1), "RGBA")
    elif mode == "P":
        im = Image.fromarray(a, "L").convert("P")
    else:
        raise ValueError(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


def make_folder(root: Path, classes=("cat", "dog"), per_class: int = 12, mode: str = "L") -> Path:
    """ROOT/CLASS/i.png with class-dependent brightness."""
    for k, name in enumerate(classes):
        for i in range(per_class):
            make_image(root / name / f"{i}.png", 40 + 160 * k + i, mode)
    return root


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> Path:
    """One smallcnn run on scikit-learn's digits (2 epochs, ~2 s), shared by the read-only tests."""
    out = tmp_path_factory.mktemp("runs") / "digits"
    code = main(["train", "--data", "digits", "--epochs", "2", "--out", str(out), "--quiet", "--seed", "1"])
    assert code == 0
    return out
