"""Claiming a run directory: exactly one training writes into it at a time, and never over its inputs.

``claim(run_dir)`` takes an exclusive ``flock`` on ``RUN/.cnnkit.lock`` for as long as the training runs (the
kernel drops it when the process ends, also on SIGKILL, so a crashed run never leaves a stale lock; a run that
ends normally or with an error removes the file). A second
training into the same directory gets one line and exit status 2 before it writes anything. Temporary files
that a killed save left behind (``.NAME.*.tmp``) are removed once the directory is ours.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import CnnkitError

LOCK = ".cnnkit.lock"


@contextlib.contextmanager
def claim(run_dir: Path) -> Iterator[Path]:
    """Hold ``run_dir`` for the duration of the ``with`` block (see the module docstring). Under torchrun the
    processes of one training share it: rank 0 holds the claim for them all."""
    if int(os.environ.get("RANK", "0")) > 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        yield run_dir
        return
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except (FileExistsError, NotADirectoryError):
        raise CnnkitError(
            f"expected a directory for the run, found a file at {str(run_dir)!r}; choose another --out"
        ) from None
    except OSError as e:
        raise CnnkitError(
            f"expected a run directory cnnkit can write, found {str(run_dir)!r} ({e.strerror}); choose another --out"
        ) from None
    held = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = True
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            raise CnnkitError(
                f"expected {str(run_dir)!r} to be free, found another training writing into it; wait for it to"
                " finish or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        remove_stale_temps(run_dir)
        yield run_dir
    finally:
        if held:
            (run_dir / LOCK).unlink(missing_ok=True)  # a run that ended leaves no lock file behind
        os.close(fd)  # releases the lock


def remove_stale_temps(run_dir: Path) -> list[Path]:
    """Delete the ``.NAME.*.tmp`` files an interrupted atomic write left (only call while holding the claim)."""
    stale = [p for p in run_dir.glob(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def check_not_inside(out: Path, data: str | None, what: str = "--out") -> None:
    """Refuse a run directory that is, or lies inside, the dataset folder (its files would become data)."""
    if not data or not Path(data).is_dir():
        return
    src, dst = Path(data).resolve(), out.resolve()
    if dst == src or src in dst.parents:
        raise CnnkitError(
            f"expected {what} outside the dataset, found {str(out)!r} inside {str(src)!r} (the run's files would"
            " become training images); choose another --out"
        )
