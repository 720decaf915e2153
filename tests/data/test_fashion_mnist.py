"""Fashion-MNIST: IDX parsing, the search order, and the verified download against a local HTTP server."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from cnnkit.data import fashion_mnist as fm
from cnnkit.errors import CnnkitError


def idx_bytes(a: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    return header + a.astype(np.uint8).tobytes()


def write_fake_set(root: Path, n_train: int = 20, n_test: int = 10) -> dict[str, str]:
    """Four small gzipped IDX files; returns their payload SHA-256s (the table format cnnkit uses)."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte.gz": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": np.arange(n_test) % 10,
    }
    root.mkdir(parents=True, exist_ok=True)
    sums = {}
    for name, a in arrays.items():
        raw = idx_bytes(a)
        (root / name).write_bytes(gzip.compress(raw))
        sums[name] = hashlib.sha256(raw).hexdigest()
    return sums


@pytest.fixture
def server(tmp_path):
    """A static HTTP server on 127.0.0.1 serving tmp_path/www; yields its base URL."""
    www = tmp_path / "www"
    www.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", www
    httpd.shutdown()
    httpd.server_close()


def test_read_idx_round_trip(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "x.gz").write_bytes(gzip.compress(idx_bytes(a)))
    (tmp_path / "x").write_bytes(idx_bytes(a))
    assert np.array_equal(fm.read_idx(tmp_path / "x.gz"), a) and np.array_equal(fm.read_idx(tmp_path / "x"), a)


def test_truncated_idx_is_a_clear_error(tmp_path):
    (tmp_path / "x").write_bytes(idx_bytes(np.zeros((4, 2, 2)))[:-3])
    with pytest.raises(CnnkitError, match="truncated"):
        fm.read_idx(tmp_path / "x")


def test_search_order_data_dir_then_env(tmp_path, monkeypatch):
    write_fake_set(tmp_path / "a")
    write_fake_set(tmp_path / "b" / "fashion-mnist")
    monkeypatch.setenv("CNNKIT_DATA", str(tmp_path / "b"))
    assert fm.locate(str(tmp_path / "a")) == tmp_path / "a"
    assert fm.locate(None) in (tmp_path / "b" / "fashion-mnist", fm.DEBIAN_DIR)
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "none")
    assert fm.locate(None) == tmp_path / "b" / "fashion-mnist"


def test_download_verified_and_atomic(server, tmp_path):
    url, www = server
    sums = write_fake_set(www)
    dest = fm.fetch(tmp_path / "cache", base_url=url, checksums=sums)
    assert sorted(os.listdir(dest)) == sorted(sums)  # no temporary files left behind
    arrays = fm.load(str(dest))
    assert arrays["train"][0].shape == (20, 28, 28) and arrays["test"][1].tolist() == list(range(10))


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    url, www = server
    sums = write_fake_set(www)
    sums["train-images-idx3-ubyte.gz"] = "0" * 64
    with pytest.raises(CnnkitError, match="SHA-256"):
        fm.fetch(tmp_path / "cache", base_url=url, checksums=sums)
    assert not (tmp_path / "cache" / "train-images-idx3-ubyte.gz").exists()
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]


def test_network_error_is_clear(tmp_path, server):
    url, _ = server  # nothing served: 404
    with pytest.raises(CnnkitError, match="network error"):
        fm.fetch(tmp_path / "cache", base_url=url)
    assert not any((tmp_path / "cache").iterdir())


def test_load_downloads_into_the_cache_when_not_found(server, tmp_path, monkeypatch):
    url, www = server
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "none")
    monkeypatch.setattr(fm, "MIRROR", url)
    monkeypatch.setattr(fm, "FILES", write_fake_set(www))
    arrays = fm.load(None)
    assert arrays["train"][0].shape == (20, 28, 28)
    assert fm.locate(None) == fm.cache_dir() / "fashion-mnist"


def test_not_found_without_download_is_clear(tmp_path, monkeypatch):
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "none")
    with pytest.raises(CnnkitError, match="dataset-fashion-mnist"):
        fm.load(str(tmp_path), allow_download=False)


@pytest.mark.skipif(fm.locate() is None, reason="Fashion-MNIST is not installed on this machine")
def test_real_files_match_the_checksum_table():
    from cnnkit.data.download import sha256_file

    root = fm.locate()
    for name, digest in fm.FILES.items():
        assert sha256_file(root / name, gunzip=True) == digest
