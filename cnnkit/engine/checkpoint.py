"""Run-directory files, written atomically (temp file + ``os.replace``) and read safely.

Weights go to safetensors; the training state (optimizer, scheduler, RNG, counters) to ``train_state.pt``,
which holds only tensors and plain Python values so that ``torch.load(weights_only=True)`` reads it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import CnnkitError


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
    except json.JSONDecodeError as e:
        raise CnnkitError(f"expected valid JSON in {str(p)!r}, found {e}; the file is damaged") from None


def state_dict_for_saving(model: nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies (channels_last parameters are not contiguous; safetensors needs them to be)."""
    return {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}


def save_weights(model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Save ``model``'s state dict as safetensors; refuses non-finite weights so a good file is never replaced."""
    sd = state_dict_for_saving(model)
    bad = [k for k, v in sd.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CnnkitError(f"expected finite weights, found NaN/inf in {bad[0]}; not saved — lower the learning rate")
    return atomic_write(path, lambda tmp: save_file(sd, tmp, metadata=metadata))


def load_weights(model: nn.Module, path: str | Path, strict: bool = True) -> dict[str, str]:
    """Load safetensors weights into ``model``; returns the file's metadata."""
    path = Path(path)
    try:
        sd = load_file(path)
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except FileNotFoundError:
        raise CnnkitError(f"expected weights at {str(path)!r}, found no file; is the run complete?") from None
    except (SafetensorError, OSError) as e:
        raise CnnkitError(f"expected a safetensors file at {str(path)!r}, found {e}; the file is damaged") from None
    try:
        model.load_state_dict(sd, strict=strict)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise CnnkitError(f"expected weights that fit {type(model).__name__}, found a mismatch ({first})") from None
    return meta


def save_state(state: dict[str, Any], path: str | Path) -> Path:
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: str | Path) -> dict[str, Any]:
    """Read ``train_state.pt`` with ``weights_only=True`` (tensors and plain values only; no code runs)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CnnkitError(f"expected a training state at {str(path)!r}, found no file; it can't be resumed") from None
    except Exception as e:
        raise CnnkitError(f"expected a cnnkit training state at {str(path)!r}, found {type(e).__name__}: {e}") from None
