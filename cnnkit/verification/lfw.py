"""LFW's standard protocol on pair distances: k-fold accuracy, where each fold is scored at the threshold chosen
on the other folds, its mean and standard deviation over folds, and ROC AUC, EER and TAR@FAR over all pairs.

The run-dependent part (embedding the images a ``pairs.txt`` names) is ``cnnkit.tasks.verify.evaluate_pairs``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import CnnkitError
from .pairs import FARS, Pairs, best_threshold, tar_key, verification_metrics


def index_pairs(pairs: list[tuple]) -> tuple[list[Any], Pairs]:
    """``lfw_pairs``'s ``[(path_a, path_b, same, fold)]`` -> (the distinct images in first-seen order, and
    :class:`Pairs` whose ``a`` / ``b`` index into them), so each image is embedded once."""
    images: dict[Any, int] = {}
    a, b = [], []
    for p in pairs:
        a.append(images.setdefault(p[0], len(images)))
        b.append(images.setdefault(p[1], len(images)))
    same = torch.tensor([bool(p[2]) for p in pairs], dtype=torch.bool)
    fold = torch.tensor([int(p[3]) for p in pairs], dtype=torch.long)
    return list(images), Pairs(torch.tensor(a, dtype=torch.long), torch.tensor(b, dtype=torch.long), same, fold)


def fold_accuracies(dist: Tensor, same: Tensor, fold: Tensor) -> tuple[list[int], list[float], list[float]]:
    """Per fold, the threshold chosen (``best_threshold``) on the pairs of all *other* folds and the accuracy
    (same when ``dist ≤ threshold``) on the held-out fold.

    Args:
        dist: Tensor[N] pair distances; same: bool Tensor[N]; fold: int Tensor[N] each pair's fold.

    Returns:
        (the folds that have pairs, in order; their thresholds; their accuracies).

    Raises:
        CnnkitError: with fewer than 2 folds that have pairs (no other fold to choose a threshold on).
    """
    folds = sorted(set(fold.tolist()))
    if len(folds) < 2:
        raise CnnkitError(f"expected pairs in at least 2 folds (each fold's threshold is chosen on the others),"
                          f" found {len(folds)}; give a pairs file with FOLDS ≥ 2 on its first line")  # fmt: skip
    thresholds, accuracies = [], []
    for k in folds:
        held = fold == k
        t = best_threshold(dist[~held], same[~held])
        thresholds.append(t)
        accuracies.append(float(((dist[held] <= t) == same[held]).double().mean()))
    return folds, thresholds, accuracies


def lfw_protocol(dist: Tensor, same: Tensor, fold: Tensor) -> dict[str, Any]:
    """LFW's figures for these pair distances.

    Args:
        dist: Tensor[N] squared distances (smaller: more alike); same: bool Tensor[N]; fold: int Tensor[N].

    Returns:
        ``accuracy_mean`` and ``accuracy_std`` (numpy's, over folds: ddof 0), ``fold_accuracies``,
        ``fold_thresholds``, ``folds`` (how many have pairs), ``n_pairs`` and ``n_matched``; over all pairs
        ``auc``, ``eer``, ``tar_at_far_1e-3`` and ``tar_at_far_1e-2`` (``verification_metrics``; its accuracy
        is left out: no one threshold here was chosen without the pairs it would score).
    """
    _, thresholds, accuracies = fold_accuracies(dist, same, fold)
    return _figures(dist, same, verification_metrics(dist, same, float(np.mean(thresholds))), thresholds, accuracies)


def one_fold(dist: Tensor, same: Tensor, threshold: float, chosen_on: str) -> dict[str, Any]:
    """The figures of a pairs file with one fold (View 1's ``pairsDevTest.txt``): no other fold to choose a
    threshold on, so the accuracy is at ``threshold``, chosen elsewhere (``chosen_on``: the run's validation pairs).

    Args:
        dist: Tensor[N] squared distances; same: bool Tensor[N].

    Returns:
        :func:`lfw_protocol`'s keys (``folds`` 1, ``accuracy_std`` 0, the one threshold) plus
        ``threshold_chosen_on``.
    """
    m: dict[str, Any] = verification_metrics(dist, same, threshold)
    return {**_figures(dist, same, m, [threshold], [m["accuracy"]]), "threshold_chosen_on": chosen_on}


def _figures(dist: Tensor, same: Tensor, overall: dict[str, Any], thresholds: list[float],
             accuracies: list[float]) -> dict[str, Any]:  # fmt: skip
    """The keys :func:`lfw_protocol` and :func:`one_fold` return, from each fold's threshold and accuracy and
    ``verification_metrics`` over all pairs (``overall``: its AUC, EER and TAR@FAR)."""
    out: dict[str, Any] = {"n_pairs": len(dist), "n_matched": int(same.sum()), "folds": len(accuracies),
                           "accuracy_mean": float(np.mean(accuracies)), "accuracy_std": float(np.std(accuracies)),
                           "fold_accuracies": accuracies, "fold_thresholds": thresholds}  # fmt: skip
    out.update({k: overall[k] for k in ("auc", "eer", *map(tar_key, FARS))})
    return out


def lfw_text(m: dict[str, Any]) -> str:
    """The terminal block for :func:`lfw_protocol`'s figures (plus ``pairs_file``, ``skipped`` if present)."""
    skipped = m.get("skipped", [])
    tars = "   ".join(f"TAR@FAR={key.removeprefix('tar_at_far_')} {m[key]:.4f}" for key in map(tar_key, FARS))
    lines = [
        f"{m.get('pairs_file', 'pairs')}: {m['n_pairs']} pairs ({m['n_matched']} matched) in {m['folds']} folds,"
        f" {len(skipped)} skipped",
        f"  {m['folds']}-fold accuracy {m['accuracy_mean']:.4f} ± {m['accuracy_std']:.4f} (each fold at the"
        " threshold chosen on the other folds; squared distance)"
        if "threshold_chosen_on" not in m
        else f"  accuracy {m['accuracy_mean']:.4f} at threshold {m['fold_thresholds'][0]:.4f} (squared distance,"
        f" chosen on {m['threshold_chosen_on']})",
        f"  all pairs: ROC AUC {m['auc']:.4f}   EER {m['eer']:.4f}   {tars}",
    ]  # fmt: skip
    lines += [f"  skipped {s}" for s in skipped[:5]]
    if len(skipped) > 5:
        lines.append(f"  … and {len(skipped) - 5} more skipped")
    return "\n".join(lines)
