"""Faces in photographs: read a photo, detect its faces (MTCNN), describe and draw them, and give the aligned crop
of a face for the embedding network (``cnnkit faces detect``, ``cnnkit verify … --faces``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from ..errors import CnnkitError
from .align import align_face
from .mtcnn import MTCNN, Faces

LANDMARKS = ("eye", "eye", "nose", "mouth", "mouth")  # left to right in the image


def read_photo(path: str | Path) -> Tensor:
    """A photo file -> uint8 Tensor[3, H, W] RGB (EXIF orientation applied); one clear line for a bad file."""
    from ..data.images import ONE_IMAGE, load_image

    return load_image(path, 3, None, ONE_IMAGE)


def faces_dict(faces: Faces) -> list[dict[str, Any]]:
    """The faces as JSON-ready records: ``box`` [x1, y1, x2, y2] pixels, ``score``, ``landmarks`` [[x, y] × 5]."""
    return [{"box": [round(v, 1) for v in b.tolist()], "score": round(float(s), 4),
             "landmarks": [[round(v, 1) for v in p] for p in lm.tolist()]}
            for b, s, lm in zip(faces.boxes, faces.scores, faces.landmarks)]  # fmt: skip


def faces_text(name: str, faces: Faces) -> str:
    """Lines for the terminal: the photo, then per face its box (x1 y1 x2 y2), score and 5 landmarks (x,y)."""
    lines = [f"{name}: {len(faces.scores)} face{'' if len(faces.scores) == 1 else 's'}"]
    for i, f in enumerate(faces_dict(faces), 1):
        box = " ".join(f"{v:.0f}" for v in f["box"])
        marks = " ".join(f"({x:.0f},{y:.0f})" for x, y in f["landmarks"])
        lines.append(f"  face {i}: box {box}  score {f['score']:.3f}  landmarks {marks}")
    return "\n".join(lines)


def draw_faces(image: Tensor, faces: Faces) -> Tensor:
    """uint8 Tensor[3, H, W] -> the same with each face's box, score and 5 landmarks drawn."""
    from torchvision.utils import draw_keypoints

    from ..drawing import draw_boxes

    if len(faces.scores) == 0:
        return image
    width = max(2, round(max(image.shape[-2:]) / 300))
    labels = [f"face {s:.2f}" for s in faces.scores.tolist()]
    out = draw_boxes(image, faces.boxes, labels, ["lime"] * len(labels), width=width)
    return draw_keypoints(out, faces.landmarks, colors="red", radius=width + 1)


def save_png(image: Tensor, path: str | Path) -> Path:
    """Write uint8 Tensor[3, H, W] as a PNG (atomically)."""
    from PIL import Image

    from ..io import atomic_write

    pil = Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())
    return atomic_write(path, lambda tmp: pil.save(tmp, format="PNG"))


class FaceCropper:
    """Photo -> the aligned crop of its most confident face: uint8 Tensor[3, size, size] (the embedding's input).

    Args:
        size: side of the aligned crop (the run's preprocessing resizes it further).
        min_face: the smallest face side to look for, in pixels.
    """

    def __init__(self, size: int = 112, min_face: int = 20) -> None:
        self.detector, self.size = MTCNN.pretrained(min_face=min_face), size

    def __call__(self, photo: str | Path | Tensor) -> Tensor:
        image = read_photo(photo) if isinstance(photo, (str, Path)) else photo
        faces = self.detector.detect(image)
        if len(faces.scores) == 0:
            raise CnnkitError(f"expected a face in {photo if isinstance(photo, (str, Path)) else 'the image'},"
                              " found none; give a photo with a visible face (or leave out --faces)")  # fmt: skip
        return align_face(image, faces.landmarks[0], self.size)

    def crops(self, photos: list[str | Path]) -> list[Tensor]:
        """The aligned crop of the most confident face of each photo."""
        return [self(p) for p in photos]
