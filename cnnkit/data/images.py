"""Reading image files into model-ready tensors, the same way for training, evaluation and prediction.

Grayscale, RGB, RGBA, palette and 16-bit images are all converted to the channel count the model expects;
transparent pixels are composited onto white. Pillow's decompression-bomb limit is never raised.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from ..errors import CnnkitError

GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


class BadImageError(CnnkitError):
    """An image file that can't be decoded: unreadable, truncated, not an image, or a decompression bomb."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(
            f"expected a readable image at {self.path!r}, found {reason}; remove or fix it, or pass --skip-bad"
        )


def image_mode(path: str | Path) -> str:
    """The Pillow mode from the file header (cheap: no pixel decoding)."""
    try:
        with Image.open(path) as im:
            return im.mode
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise BadImageError(path, _reason(e)) from None


def to_mode(im: Image.Image, in_chans: int) -> Image.Image:
    """Convert any Pillow image to ``L`` (1 channel) or ``RGB`` (3 channels), alpha composited onto white."""
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        a = np.asarray(im, dtype=np.float64)
        span = a.max() - a.min()
        im = Image.fromarray(((a - a.min()) / (span if span else 1) * 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
    return im.convert("L" if in_chans == 1 else "RGB")


def load_image(path: str | Path, in_chans: int, size: tuple[int, int] | None) -> Tensor:
    """Decode ``path`` fully -> uint8 ``Tensor[in_chans, H, W]``, resized to ``size`` (H, W) when given.

    Raises:
        BadImageError: naming the file, for anything that isn't a complete, decodable image.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                return pil_to_tensor(im, in_chans, size)
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as e:
        raise BadImageError(path, _reason(e)) from None


def pil_to_tensor(im: Image.Image, in_chans: int, size: tuple[int, int] | None) -> Tensor:
    """A Pillow image -> uint8 ``Tensor[in_chans, H, W]`` (resized with antialiasing to ``size`` = (H, W))."""
    im = to_mode(im, in_chans)
    if size is not None and im.size != (size[1], size[0]):
        im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR, reducing_gap=None)
    a = np.asarray(im, dtype=np.uint8)
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return torch.from_numpy(a.copy())


def _reason(e: BaseException) -> str:
    if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return "a decompression bomb (more pixels than Pillow's safety limit)"
    if isinstance(e, UnidentifiedImageError):
        return "a file that is not an image"
    text = str(e).split("\n")[0]
    return f"a damaged image ({text})" if text else f"a damaged image ({type(e).__name__})"
