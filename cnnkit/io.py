"""Files: atomic writes (temp file + ``os.replace``), JSON, PNG figures and the cache directory.

Every file cnnkit writes goes through :func:`atomic_write`, so a crash or a full disk never leaves a
half-written file where a good one was. This module is the bottom layer: it imports nothing from cnnkit but
the error type.
"""

from __future__ import annotations

import errno
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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise CnnkitError(f"expected a folder cnnkit may write, found {str(path.parent)!r} ({e.strerror})") from None
    os.close(fd)
    try:
        try:
            write(tmp)
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise CnnkitError(
                f"expected space on the disk to write {str(path)!r}, found it full; the previous file is intact —"
                " free some space and run again (--resume continues a training)"
            ) from None
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
    """UTF-8; file names that are not UTF-8 (which Python holds as surrogates) are written back as their bytes."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8", errors="surrogateescape"))


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


MAX_YAML_BYTES = 1 << 20  # a recipe or a layer-list spec is a few KB; more is not a config
MAX_YAML_ALIASES = 100  # "billion laughs": a few aliases of aliases expand into billions of nodes


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file safely: at most 1 MiB, UTF-8 text, at most 100 aliases, bounded nesting; one clear
    ``CnnkitError`` naming the file for anything else (never a traceback, never unbounded memory)."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_YAML_BYTES:
            raise CnnkitError(f"expected a YAML file of at most 1 MiB, found {p.stat().st_size:,} bytes in {str(p)!r}")
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise CnnkitError(f"expected a UTF-8 YAML text file, found binary data in {str(p)!r}") from None
    except OSError as e:
        raise CnnkitError(f"expected a readable YAML file at {str(p)!r}, found {e.strerror}") from None
    return parse_yaml(text, repr(str(p)))


def parse_yaml(text: str, where: str = "the YAML text") -> Any:
    """:func:`yaml.safe_load` with the alias and nesting limits of :func:`read_yaml`."""
    import yaml

    class Loader(yaml.SafeLoader):
        aliases = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                Loader.aliases += 1
                if Loader.aliases > MAX_YAML_ALIASES:
                    raise CnnkitError(f"expected at most {MAX_YAML_ALIASES} YAML aliases in {where}, found more")
            return super().compose_node(parent, index)

    try:
        return yaml.load(text, Loader=Loader)
    except yaml.YAMLError as e:
        raise CnnkitError(f"expected valid YAML in {where}, found {short(str(e), 200)}".replace("\n", " ")) from None
    except RecursionError:
        raise CnnkitError(f"expected YAML nested a few levels deep in {where}, found it nested too deep") from None


def short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages that echo what a user gave."""
    text = value if isinstance(value, str) and limit > 80 else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


RUN_FILES = frozenset({"model.json", "model.safetensors", "train_state.pt", "config.yaml", "split.json",
                       "history.csv", "metrics.json", "model_spec.yaml"})  # fmt: skip


def check_output(path: str | Path, what: str, inputs: tuple[str | Path, ...] = (), folder: bool = False) -> Path:
    """Refuse an output path that would destroy something: an input file, a run directory's own file, a folder
    where a file goes (or a file where a folder goes). Returns the path."""
    p = Path(path)
    if folder and p.exists() and not p.is_dir():
        raise CnnkitError(f"expected a folder for {what}, found a file at {str(p)!r}; choose another path")
    if not folder and p.is_dir():
        raise CnnkitError(f"expected a file path for {what}, found a folder at {str(p)!r}; add a file name")
    target = p.resolve()
    for i in inputs:
        if Path(i).resolve() == target:
            raise CnnkitError(f"expected {what} to be a new file, found the input {str(i)!r}; it would be replaced")
    if not folder and p.name in RUN_FILES and (p.parent / "model.json").exists():
        raise CnnkitError(
            f"expected {what} outside the run's own files, found {str(p)!r}, which the run needs; choose another name"
        )
    return p
