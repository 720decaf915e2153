"""Run-directory files, written atomically (temp file + ``os.replace``) and read safely.

Weights go to safetensors; the training state (optimizer, scheduler, RNG, counters) to ``train_state.pt``,
which holds only tensors and plain Python values so that ``torch.load(weights_only=True)`` reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import CnnkitError
from ..io import atomic_write


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
    bad = [k for k, v in sd.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CnnkitError(
            f"expected finite weights in {str(path)!r}, found NaN/inf in {bad[0]}; the file is damaged — retrain or"
            " restore it"
        )
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
