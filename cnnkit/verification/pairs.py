"""Verification pairs and their figures: seeded matched / mismatched pairs of a labelled split, LFW's
``pairs.txt`` protocol, and the metrics (pair accuracy at a threshold chosen on other pairs, ROC and AUC, EER,
TAR at fixed FAR), all from scikit-learn's ``roc_curve``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import CnnkitError

FARS = (1e-3, 1e-2)


@dataclass
class Pairs:
    """Pairs of examples: ``a``, ``b`` indices Tensor[N] into a list of images, ``same`` bool Tensor[N], and
    ``fold`` int Tensor[N] (LFW's ten folds; 0 for sampled pairs)."""

    a: Tensor
    b: Tensor
    same: Tensor
    fold: Tensor

    def __len__(self) -> int:
        return len(self.same)


FEW_PAIRS = 20  # a kind of pair with at most this many × n distinct pairs is sampled without repeats


def sample_pairs(labels: Tensor, n: int, seed: int = 0) -> Pairs:
    """Up to ``n`` matched and ``n`` mismatched pairs of distinct examples, seeded. Where a kind has at most
    :data:`FEW_PAIRS` × n distinct pairs (a small folder of faces), ``n`` of them are chosen without repeats (all of
    them when there are fewer); else they are drawn with replacement, as repeats are then rare.

    Args:
        labels: Tensor[N] identities of the examples.

    Raises:
        CnnkitError: when no identity has two images (no matched pair can be made) or there is one identity.
    """
    g = torch.Generator().manual_seed(seed)
    ids, counts = labels.unique(return_counts=True)
    if (counts >= 2).sum() == 0 or len(ids) < 2:
        raise CnnkitError(f"expected at least 2 identities and one with 2 images for verification pairs, found"
                          f" {len(ids)} identities with at most {int(counts.max()) if len(counts) else 0} image(s)"
                          " each; add images, or use --skip-bad to leave such identities out")  # fmt: skip
    matched = int((counts * (counts - 1)).sum()) // 2
    mismatched = (len(labels) ** 2 - int(counts.square().sum())) // 2
    if matched <= FEW_PAIRS * n:
        a, b = _subset(_all_pairs(labels, counts, same=True), n, g)
    else:
        a, b = _matched(labels, ids[counts >= 2], n, g)
    if mismatched <= FEW_PAIRS * n:
        x, y = _subset(_all_pairs(labels, counts, same=False), n, g)
    else:
        x, y = torch.randint(len(labels), (2, 4 * n), generator=g)
        keep = (labels[x] != labels[y]).nonzero().flatten()[:n]
        x, y = x[keep], y[keep]
    same = torch.cat([torch.ones(len(a), dtype=torch.bool), torch.zeros(len(x), dtype=torch.bool)])
    return Pairs(torch.cat([a, x]), torch.cat([b, y]), same, torch.zeros(len(same), dtype=torch.long))


def _matched(labels: Tensor, many: Tensor, n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """n matched pairs drawn with replacement: an identity of ``many`` (those with 2+ images), then two of its
    images. Tensor[n] each."""
    ident = many[torch.randint(len(many), (n,), generator=g)]
    a, b = [], []
    for i in ident.tolist():  # two distinct images of one identity
        idx = (labels == i).nonzero().flatten()
        pick = idx[torch.randperm(len(idx), generator=g)[:2]]
        a.append(int(pick[0])), b.append(int(pick[1]))
    return torch.tensor(a, dtype=torch.long), torch.tensor(b, dtype=torch.long)


def _all_pairs(labels: Tensor, counts: Tensor, same: bool) -> tuple[Tensor, Tensor]:
    """Every unordered pair of distinct examples with the same (or different) identity: Tensor[M] each, built one
    identity (or pair of identities) at a time, so memory follows M rather than len(labels)². ``counts``: the
    examples of each identity, in sorted identity order (``labels.unique(return_counts=True)``)."""
    groups = labels.argsort(stable=True).split(counts.tolist())
    if same:
        parts = [torch.combinations(x, 2) for x in groups if len(x) >= 2]
    else:
        parts = [torch.cartesian_prod(x, y).view(-1, 2) for k, x in enumerate(groups) for y in groups[k + 1 :]]
    both = torch.cat(parts) if parts else torch.zeros(0, 2, dtype=torch.long)
    return both[:, 0], both[:, 1]


def _subset(pairs: tuple[Tensor, Tensor], n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """At most n of ``pairs``, each at most once (a seeded choice)."""
    pick = torch.randperm(len(pairs[0]), generator=g)[:n]
    return pairs[0][pick], pairs[1][pick]


def pair_distances(emb: Tensor, pairs: Pairs) -> Tensor:
    """Squared Euclidean distance of each pair: emb Tensor[N, D] -> Tensor[len(pairs)]."""
    return (emb[pairs.a] - emb[pairs.b]).square().sum(1)


def best_threshold(dist: Tensor, same: Tensor) -> float:
    """The distance threshold (same when ``dist ≤ threshold``) with the best accuracy on these pairs: a
    midpoint between neighbouring distances, so it generalises no more optimistically than it must."""
    d, s = dist.double().numpy(), same.numpy()
    order = np.argsort(d)
    d, s = d[order], s[order]
    # accuracy when the first i pairs (sorted by distance) are called "same": matched among them + mismatched after
    correct = np.concatenate([[0], np.cumsum(s)]) + np.concatenate([[(~s).sum()], (~s).sum() - np.cumsum(~s)])
    i = int(correct.argmax())
    if i == 0:
        return float(d[0]) - 1e-6
    return float(d[i - 1] + d[i]) / 2 if i < len(d) else float(d[-1]) + 1e-6


def tar_key(far: float) -> str:
    """The metrics key of TAR at ``far``: 1e-3 -> ``tar_at_far_1e-3``."""
    return f"tar_at_far_{far:.0e}".replace("e-0", "e-")


def verification_metrics(dist: Tensor, same: Tensor, threshold: float) -> dict[str, float | list]:
    """ROC AUC, EER, TAR at FAR 1e-3 and 1e-2, and pair accuracy at ``threshold`` (chosen on other pairs).

    Args:
        dist: Tensor[N] pair distances (smaller: more alike); same: bool Tensor[N].

    Returns:
        ``auc``, ``eer``, ``tar_at_far_1e-3``, ``tar_at_far_1e-2``, ``accuracy``, ``threshold``, ``n_pairs`` and
        the curve ``fpr``, ``tpr`` (lists) for plotting.
    """
    from sklearn.metrics import auc, roc_curve  # imported when scored: scikit-learn takes ~1.5 s to import

    y, score = same.numpy().astype(int), -dist.double().numpy()
    if y.min() == y.max():
        raise CnnkitError(
            f"expected both matched and mismatched pairs, found only {'matched' if y[0] else 'mismatched'}"
        )
    fpr, tpr, _ = roc_curve(y, score)
    fnr = 1 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    out: dict[str, float | list] = {"auc": float(auc(fpr, tpr)), "eer": float((fpr[i] + fnr[i]) / 2)}
    for far in FARS:  # the highest TAR whose FAR stays at or under the target
        out[tar_key(far)] = float(tpr[fpr <= far].max(initial=0.0))
    out["accuracy"] = float(((dist <= threshold) == same).float().mean())
    out["threshold"], out["n_pairs"] = float(threshold), len(y)
    out["fpr"], out["tpr"] = fpr.tolist(), tpr.tolist()
    return out


LFW_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")  # LFW's own are .jpg; a user's faces may not be


def lfw_image(root: Path, name: str, i: int) -> Path:
    """Image ``i`` of ``name`` in LFW's layout, ``root/name/name_000i.jpg``; the same stem with another image suffix
    (``.png``, ``.jpeg``) when that is the file there. The ``.jpg`` path when none exists (named as missing)."""
    stem = root / name / f"{name}_{i:04d}"
    return next((f for f in (stem.with_name(stem.name + s) for s in LFW_SUFFIXES) if f.is_file()),
                stem.with_name(stem.name + ".jpg"))  # fmt: skip


def lfw_pairs(pairs_file: str | Path, root: str | Path, skip_bad: bool = False) -> tuple[list[tuple], list[str]]:
    """Read LFW's ``pairs.txt`` (first line: folds and pairs per fold; then, per fold, that many matched lines
    ``name i j`` and as many mismatched ``name1 i name2 j``); image ``i`` of ``name`` is
    ``root/name/name_000i.jpg`` (or ``.png``, ``.jpeg``: :func:`lfw_image`). View 1's ``pairsDevTrain.txt`` /
    ``pairsDevTest.txt`` (first line: the pairs of each kind) are one fold. The CSV copy of pairs.txt that some
    downloads carry (``pairs.csv``) is read too (:func:`_csv_pair_rows`).

    Returns:
        ([(path_a, path_b, same, fold)], skipped lines as "line N: reason"). A pair naming a missing image is a
        CnnkitError, or skipped and listed with ``skip_bad``.
    """
    pairs_file = Path(pairs_file)
    if not pairs_file.is_file():
        raise CnnkitError(f"expected LFW's pairs.txt at {str(pairs_file)!r}, found no such file; check --pairs")
    text = pairs_file.read_text(encoding="utf-8-sig", errors="replace")  # ASCII; a byte order mark is no field
    lines = [(n, ln) for n, ln in enumerate(text.splitlines(), 1) if ln.strip()]
    rows = _csv_pair_rows(lines) if lines and "," in lines[0][1] else _txt_pair_rows(lines, pairs_file)
    root, out, skipped = Path(root), [], []
    for n, parts, fold in rows:
        names = (parts[0], parts[1], parts[0], parts[2]) if len(parts) == 3 else tuple(parts)
        if len(names) != 4 or not (names[1].isdecimal() and names[3].isdecimal()):
            raise CnnkitError(f"expected 'name i j' or 'name1 i name2 j' on line {n} of {str(pairs_file)!r}, found"
                              f" {' '.join(parts)!r}; fix that line")  # fmt: skip
        a_name, a_i, b_name, b_i = names
        paths = [lfw_image(root, name, int(i)) for name, i in ((a_name, a_i), (b_name, b_i))]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            reason = f"line {n}: missing image {missing[0]}"
            if not skip_bad:
                raise CnnkitError(f"expected the images that {str(pairs_file)!r} names, found {reason}; check --root"
                                  " or pass --skip-bad to leave such pairs out")  # fmt: skip
            skipped.append(reason)
            continue
        out.append((*paths, len(parts) == 3, fold))
    return out, skipped


def _txt_pair_rows(lines: list[tuple[int, str]], pairs_file: Path) -> list[tuple[int, list[str], int]]:
    """(line number, fields, fold) of each pair of LFW's ``pairs.txt`` layout, after checking its first line."""
    first = " ".join(lines[0][1].split()) if lines else ""
    try:
        numbers = [int(v) for v in first.split()]
        folds, per_fold = numbers if len(numbers) == 2 else (1, *numbers)  # View 1: 'PAIRS', one fold
        if folds < 1 or per_fold < 1:
            raise ValueError
    except ValueError:
        raise CnnkitError(f"expected a first line 'FOLDS PAIRS' (pairs.txt) or 'PAIRS' (pairsDevTest.txt), positive"
                          f" whole numbers, in {str(pairs_file)!r}, found {first or 'an empty file'!r}; give one of"
                          " LFW's pairs files") from None  # fmt: skip
    if len(lines) - 1 != 2 * folds * per_fold:
        raise CnnkitError(f"expected {2 * folds * per_fold} pair lines after the first line of {str(pairs_file)!r}"
                          f" ({folds} folds × {per_fold} matched and {per_fold} mismatched), found {len(lines) - 1};"
                          " fix the first line or the pair lines")  # fmt: skip
    return [(n, ln.split(), k // (2 * per_fold)) for k, (n, ln) in enumerate(lines[1:])]


def _csv_pair_rows(lines: list[tuple[int, str]]) -> list[tuple[int, list[str], int]]:
    """The same from the CSV copy of the pairs some LFW downloads carry (``pairs.csv``: a header
    ``name,imagenum1,imagenum2,``, then the pairs in pairs.txt's order without its first line; empty trailing
    fields dropped). A fold is a run of matched pairs and the run of mismatched ones after it, as pairs.txt lays
    them out."""
    rows, fold, after_mismatched = [], 0, False
    for k, (n, ln) in enumerate(lines):
        parts = [f.strip() for f in ln.split(",")]
        while parts and not parts[-1]:
            parts.pop()
        if k == 0 and not (len(parts) > 1 and parts[1].isdecimal()):
            continue  # the header
        matched = len(parts) == 3
        fold += matched and after_mismatched
        after_mismatched = not matched
        rows.append((n, parts, fold))
    return rows
