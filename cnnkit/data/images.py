"""Reading image files into model-ready tensors, the same way for training, evaluation and prediction.

Grayscale, RGB, RGBA, palette and 16-bit images are all converted to the channel count the model expects;
transparent pixels are composited onto white. Pillow's decompression-bomb limit is never raised.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from ..errors import CnnkitError
from .content import fit_content

GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


MAX_PIXELS = 40_000_000  # decoded images larger than this are refused before decoding (memory stays bounded)
SKIP_HINT = "remove or fix it, or pass --skip-bad"  # an image of a dataset
ONE_IMAGE = "fix it or give another image"  # an image given to a command on its own


class BadImageError(CnnkitError):
    """An image file that can't be decoded: missing, unreadable, truncated, not an image, too large, or a
    decompression bomb. ``hint`` says what to do: datasets can skip it, a single image must be fixed."""

    def __init__(self, path: str | Path, reason: str, hint: str = SKIP_HINT) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"expected a readable image at {self.path!r}, found {reason}; {hint}")


def image_mode(path: str | Path) -> str:
    """The Pillow mode from the file header (cheap: no pixel decoding)."""
    try:
        with Image.open(path) as im:
            return im.mode
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise BadImageError(path, _reason(e)) from None


def to_mode(im: Image.Image, in_chans: int) -> Image.Image:
    """Convert any Pillow image to ``L`` (1 channel) or ``RGB`` (3 channels), alpha composited onto white (``im``
    itself when it already is)."""
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        a = np.asarray(im, dtype=np.float64)
        if not np.isfinite(a).all():
            raise ValueError("NaN or infinite pixel values")
        span = a.max() - a.min()
        im = Image.fromarray(((a - a.min()) / (span if span else 1) * 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
    mode = "L" if in_chans == 1 else "RGB"
    return im if im.mode == mode else im.convert(mode)  # no copy when it is already in that mode


def load_image(path: str | Path, in_chans: int, size: tuple[int, int] | None, hint: str = SKIP_HINT,
               content: dict[str, Any] | None = None) -> Tensor:  # fmt: skip
    """Decode ``path`` fully -> uint8 ``Tensor[in_chans, H, W]``, resized to ``size`` (H, W) when given; with
    ``content`` (a grey run's look, :func:`cnnkit.data.content.describe_content`) brought to that look first.

    Raises:
        BadImageError: naming the file, for anything that isn't a complete, decodable image of at most
            :data:`MAX_PIXELS` pixels (EXIF orientation applied, as a phone's gallery shows it); ``hint`` ends its
            message (datasets: skip it with --skip-bad; one image given to a command: fix it).
    """
    im = read_image(path, hint)
    try:
        if content and in_chans == 1 and size is not None:
            return contiguous(resize(fit_content(pil_to_tensor(im, 1, None), content, size), size))
        return pil_to_tensor(im, in_chans, size)
    except (ValueError, OSError) as e:  # pixels that can't be converted (NaN floats, a broken palette)
        raise BadImageError(path, _reason(e), hint) from None


def read_image(path: str | Path, hint: str = SKIP_HINT, shorter: int | None = None) -> Image.Image:
    """Decode ``path`` into a Pillow image, upright (EXIF orientation applied); errors as :func:`load_image`.

    ``shorter``: the shorter side the caller will resize to; a JPEG is then decoded at the smallest of 1/1, 1/2,
    1/4 or 1/8 scale that still covers it (libjpeg's DCT scaling: a 12-megapixel photo decodes ~20× faster)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                check_size(path, im)
                if shorter and im.format == "JPEG":
                    w, h = im.size
                    im.draft(im.mode, (shorter * w // min(w, h), shorter * h // min(w, h)))
                im.load()  # the pixels outlive the file: leaving `with` closes only the file
                ImageOps.exif_transpose(im, in_place=True)  # no copy when there is no orientation to apply
                return im
    except FileNotFoundError:
        raise BadImageError(path, "no such file", hint) from None
    except IsADirectoryError:
        raise BadImageError(path, "a folder", hint) from None
    except PermissionError:
        raise BadImageError(path, "a file it may not read (permission denied)", hint) from None
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as e:
        raise BadImageError(path, _reason(e), hint) from None


def check_size(path: str | Path, im: Image.Image) -> None:
    """Refuse, from the header alone, an image whose decoded pixels would exceed :data:`MAX_PIXELS`."""
    w, h = im.size
    if w * h > MAX_PIXELS:
        raise BadImageError(
            path, f"{w}×{h} = {w * h / 1e6:.1f} megapixels (cnnkit reads at most {MAX_PIXELS / 1e6:.0f})",
            "resize it first (e.g. to 4000 pixels on the long side)",
        )  # fmt: skip


def pil_to_tensor(im: Image.Image, in_chans: int, size: tuple[int, int] | None) -> Tensor:
    """A Pillow image -> contiguous uint8 ``Tensor[in_chans, H, W]``, resized to ``size`` = (H, W) when given
    (bilinear with antialiasing, see :func:`resize`)."""
    im = to_mode(im, in_chans)
    if size is not None:
        return contiguous(resize(pixels(im), size))
    a = np.asarray(im)
    return torch.from_numpy(np.array(a[None] if a.ndim == 2 else a.transpose(2, 0, 1), order="C"))  # one copy


def pixels(im: Image.Image) -> Tensor:
    """A Pillow image in mode ``L`` or ``RGB`` -> its own copy of the pixels, uint8 ``Tensor[C, H, W]`` laid out
    H×W×C in memory (channels-last, as Pillow packs them: what :func:`resize` is fastest on)."""
    a = np.asarray(im).copy()  # asarray is a read-only view of Pillow's packed bytes; the copy is a plain memcpy
    t = torch.from_numpy(a)
    return t[None] if a.ndim == 2 else t.permute(2, 0, 1)


def contiguous(image: Tensor) -> Tensor:
    """``image`` laid out as its shape says (C×H×W), copied if it is not: on the CPU through numpy, whose strided
    uint8 copy from channels-last takes about half the time of ``Tensor.contiguous`` here."""
    if image.is_contiguous():
        return image
    if image.device.type != "cpu":
        return image.contiguous()
    return torch.from_numpy(np.ascontiguousarray(image.numpy()))


def resize(image: Tensor, size: tuple[int, int], interpolation: str = "bilinear") -> Tensor:
    """uint8 ``Tensor[C, H, W]`` -> ``Tensor[C, *size]``, ``interpolation`` "bilinear" or "bicubic" with
    antialiasing: torchvision's vectorised uint8 kernels (several times faster than Pillow's on channels-last
    pixels), within one grey level of Pillow's ``Image.resize`` (``tests/data/test_resize.py``). ``image`` itself
    when it already has that size."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    mode = TF.InterpolationMode.BICUBIC if interpolation == "bicubic" else TF.InterpolationMode.BILINEAR
    return TF.resize(image, list(size), interpolation=mode, antialias=True)


def _reason(e: BaseException) -> str:
    if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return "a decompression bomb (more pixels than Pillow's safety limit)"
    if isinstance(e, UnidentifiedImageError):
        return "a file that is not an image"
    text = str(e).split("\n")[0]
    return f"a damaged image ({text})" if text else f"a damaged image ({type(e).__name__})"
