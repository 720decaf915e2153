"""Per-example predictions saved so that anyone can recompute any metric: CSV or NumPy ``.npz``.

Each example has its id (``index`` in the split, or ``path`` for folder datasets), its true and predicted
class (index and name) and the full probability vector. Probabilities are stored in float64 (CSV: 17
significant digits), so ``-log p(true class)`` gives back the loss even for very confident mistakes.

CSV columns: ``index`` | ``path``, ``true``, ``predicted``, ``true_class``, ``predicted_class``, then one
``p[CLASS]`` column per class. NPZ arrays: ``index`` | ``path`` [N], ``true`` [N], ``predicted`` [N],
``probs`` [N, K], ``classes`` [K].
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch import Tensor

from ..errors import CnnkitError
from ..io import atomic_write, write_text

FORMATS = (".csv", ".npz")


def save_predictions(
    path: str | Path, ids: Sequence[int] | Sequence[str], labels: Tensor, log_probs: Tensor, classes: Sequence[str]
) -> Path:
    """Write ``labels`` Tensor[N] and the probabilities exp(``log_probs`` Tensor[N, K]) to ``path`` (.csv / .npz)."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise CnnkitError(f"expected a predictions file ending in .csv or .npz, found {path.name!r}; rename it")
    probs = log_probs.double().exp().numpy()
    true, pred = labels.long().numpy(), probs.argmax(1)
    id_name = "path" if ids and isinstance(ids[0], str) else "index"
    if path.suffix.lower() == ".npz":
        arrays = {id_name: np.asarray(ids), "true": true, "predicted": pred, "probs": probs, "classes": list(classes)}
        return atomic_write(path, lambda tmp: _savez(tmp, arrays))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([id_name, "true", "predicted", "true_class", "predicted_class", *(f"p[{c}]" for c in classes)])
    for i, t, p, row in zip(ids, true, pred, probs):
        w.writerow([i, t, p, classes[t], classes[p], *(repr(float(v)) for v in row)])
    return write_text(path, buf.getvalue())


def _savez(tmp: str, arrays: dict) -> None:
    with open(tmp, "wb") as f:  # a file object, so numpy does not append a second ".npz"
        np.savez_compressed(f, **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]  # numpy stubs


def load_predictions(path: str | Path) -> dict[str, np.ndarray]:
    """Read a predictions file -> {"ids" [N], "true" [N], "predicted" [N], "probs" [N, K], "classes" [K]}."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as z:
            ids = z["path"] if "path" in z else z["index"]
            return {
                "ids": ids,
                "true": z["true"],
                "predicted": z["predicted"],
                "probs": z["probs"],
                "classes": z["classes"],
            }
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    cols = list(zip(*body)) if body else [()] * len(header)
    return {
        "ids": np.array(cols[0]) if header[0] == "path" else np.array(cols[0], dtype=np.int64),
        "true": np.array(cols[1], dtype=np.int64),
        "predicted": np.array(cols[2], dtype=np.int64),
        "probs": np.array(cols[5:], dtype=np.float64).T.reshape(len(body), len(header) - 5),
        "classes": np.array([h[2:-1] for h in header[5:]]),
    }
