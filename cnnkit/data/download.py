"""Checksum-verified, atomic downloads into the cache.

A download streams into a temporary file beside the destination, is verified, and only then is moved
into place with ``os.replace``: an interrupted or corrupt download never leaves a file at the final path.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import CnnkitError

CHUNK = 1 << 16


def sha256_file(path: str | Path, gunzip: bool = False) -> str:
    """SHA-256 of a file's bytes, or of its decompressed payload when ``gunzip`` is true."""
    h = hashlib.sha256()
    with (gzip.open if gunzip else open)(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, dest: str | Path, sha256: str, *, gunzip_check: bool = False, timeout: float = 60) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying its SHA-256.

    Args:
        url: http(s) or file URL.
        dest: final path; written only after verification succeeds.
        sha256: expected hex digest, of the file or (``gunzip_check``) of its gzip-decompressed payload,
            which stays the same when a mirror recompresses the file; or a prefix of it of 8+ hex digits,
            as torchvision writes into its weight file names (``resnet18-f37072fd.pth``).
        timeout: seconds to wait for the server.

    Raises:
        CnnkitError: on a network failure or checksum mismatch; nothing is left at ``dest``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            _stream(url, out, timeout, desc=dest.name)
        try:
            got = sha256_file(tmp, gunzip=gunzip_check)
        except (OSError, EOFError) as e:
            raise CnnkitError(
                f"expected a gzip file from {url}, found unreadable data ({e}); try again later"
            ) from None
        if len(sha256) < 8 or not got.startswith(sha256.lower()):
            raise CnnkitError(
                f"expected SHA-256 {sha256} for {url}, found {got}; the download is corrupt or the mirror changed,"
                " nothing was saved — try again or place the file in the data directory by hand"
            )
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def _stream(url: str, out, timeout: float, desc: str) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {desc}", leave=False) as bar:
                while chunk := resp.read(CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise CnnkitError(
            f"expected to download {url}, found a network error ({reason}); check the connection"
        ) from None
