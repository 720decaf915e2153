"""Fashion-MNIST (Xiao et al. 2017): 60,000 training and 10,000 test images, 28×28 grayscale, 10 classes.

The IDX files are looked for, in order, in ``--data-dir``, ``$CNNKIT_DATA``, the Debian package
``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``) and ``~/.cache/cnnkit/fashion-mnist``;
otherwise they are downloaded from the official mirror into the cache, SHA-256 verified.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import CnnkitError
from ..io import cache_dir
from .download import download
from .idx import read_idx

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
REDOWNLOAD = "delete it to re-download"  # what to do with a damaged file: it is fetched again

# SHA-256 of the decompressed IDX payloads: the same whether a copy was recompressed (Debian's is) or not.
FILES = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}


def candidate_dirs(data_dir: str | None = None) -> list[Path]:
    """Where the IDX files are looked for, in order."""
    dirs = [Path(data_dir), Path(data_dir) / "fashion-mnist"] if data_dir else []
    if env := os.environ.get("CNNKIT_DATA"):
        dirs += [Path(env), Path(env) / "fashion-mnist"]
    return [*dirs, DEBIAN_DIR, cache_dir() / "fashion-mnist"]


def locate(data_dir: str | None = None) -> Path | None:
    """The first directory holding all four files, or ``None``."""
    for d in candidate_dirs(data_dir):
        if all((d / f).is_file() for f in FILES):
            return d
    return None


def fetch(dest: str | Path | None = None, base_url: str | None = None, checksums: dict[str, str] | None = None) -> Path:
    """Download the four files from ``base_url`` (default the official mirror) into ``dest`` (default the cache)."""
    dest = Path(dest) if dest else cache_dir() / "fashion-mnist"
    for name, digest in (checksums or FILES).items():
        if not (dest / name).is_file():
            download((base_url or MIRROR) + name, dest / name, digest, gunzip_check=True)
    return dest


def load(data_dir: str | None = None, allow_download: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (images [60000, 28, 28], labels [60000]), "test": (... [10000] ...)}`` as uint8 arrays."""
    root = locate(data_dir)
    if root is None:
        if not allow_download:
            raise CnnkitError(
                "expected Fashion-MNIST IDX files in "
                + ", ".join(map(str, candidate_dirs(data_dir)))
                + ", found none; install the Debian package dataset-fashion-mnist or allow downloading"
            )
        root = fetch()
    return {
        split: (
            read_idx(root / f"{prefix}-images-idx3-ubyte.gz", REDOWNLOAD),
            read_idx(root / f"{prefix}-labels-idx1-ubyte.gz", REDOWNLOAD),
        )
        for split, prefix in (("train", "train"), ("test", "t10k"))
    }
