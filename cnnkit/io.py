"""Files: atomic writes (temp file + ``os.replace``), JSON, PNG figures and the cache directory.

Every file cnnkit writes goes through :func:`atomic_write`, so a crash or a full disk never leaves a
half-written file where a good one was. This module is the bottom layer: it imports nothing from cnnkit but
the error type.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import CnnkitError


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then move the result to ``path``; a crash never leaves a half-written ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_json(path: str | Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2) + "\n")


def read_json(path: str | Path) -> Any:
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise CnnkitError(
            f"expected {p.name} in {str(p.parent)!r}, found no such file; is this a cnnkit run directory?"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CnnkitError(f"expected valid JSON in {str(p)!r}, found {e}; the file is damaged") from None


def json_safe(value: Any) -> Any:
    """NaN/inf -> None, recursively, so the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def save_figure(fig: Any, path: str | Path, dpi: int = 100) -> Path:
    """Write a matplotlib figure as a PNG atomically (rendered to memory first, then one atomic write)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(buf.getvalue()))


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/cnnkit`` (default ``~/.cache/cnnkit``): downloaded datasets and weights."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cnnkit"
