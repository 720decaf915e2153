"""Enrolment and identification: embeddings stored per identity (one image each is the one-shot case), the
nearest identity of a new face, or "unknown" past the verification threshold."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..errors import CnnkitError
from ..io import atomic_write, read_json, write_json

GALLERY = "gallery.safetensors"


@dataclass
class Gallery:
    """Enrolled embeddings ``emb`` Tensor[M, D] and the identity name of each row."""

    emb: Tensor
    names: list[str]

    def save(self, source: str | Path) -> Path:
        """Write the embeddings (``.safetensors``) and the names (``.json``) where :func:`gallery_path` puts them."""
        from safetensors.torch import save_file

        path = gallery_path(source)
        atomic_write(path, lambda tmp: save_file({"emb": self.emb.contiguous()}, str(tmp)))
        write_json(path.with_suffix(".json"), {"names": self.names})
        return path

    @classmethod
    def load(cls, source: str | Path) -> Gallery:
        from safetensors.torch import load_file

        path = gallery_path(source)
        if not path.is_file():
            raise CnnkitError(f"expected an enrolled gallery {str(path)!r}, found none; run `cnnkit verify enroll"
                              f" {source} --gallery DIR` first")  # fmt: skip
        return cls(load_file(str(path))["emb"], read_json(path.with_suffix(".json"))["names"])

    def identify(self, emb: Tensor, threshold: float, top: int = 3) -> list[list[tuple[str, float]]]:
        """Per query embedding (emb Tensor[Q, D]): up to ``top`` identities, nearest first, each with its
        smallest squared distance to that identity's enrolled embeddings; an empty list means "unknown" (no
        identity within ``threshold``)."""
        d = torch.cdist(emb.float(), self.emb.float()).square()  # [Q, M]
        names = sorted(set(self.names))
        cols = torch.stack(
            [d[:, [i for i, n in enumerate(self.names) if n == name]].min(1).values for name in names], 1
        )
        out = []
        for row in cols:
            order = row.argsort()[:top].tolist()
            out.append([(names[j], float(row[j])) for j in order if row[j] <= threshold])
        return out


def gallery_path(source: str | Path) -> Path:
    """Where the gallery of ``source`` lives: ``RUN/gallery.safetensors`` for a run, ``NAME.gallery.safetensors``
    beside an exported ``NAME.onnx`` (with its names in the ``.json`` of the same stem)."""
    source = Path(source)
    return source.with_suffix(".gallery.safetensors") if source.suffix == ".onnx" else source / GALLERY


def gallery_files(root: str | Path) -> dict[str, list[Path]]:
    """A folder per identity (``ROOT/NAME/*.jpg``) -> {identity: image files}; an empty identity folder or a
    missing root is a CnnkitError (from the folder indexer)."""
    from ..data.folder import index_folder

    index = index_folder(root)
    files = index.files.get("all") or [f for split in index.files.values() for f in split]
    out: dict[str, list[Path]] = {name: [] for name in index.classes}
    for path, label in files:
        out[index.classes[label]].append(path)
    return out
