"""Batches of P identities × K images each, the composition a triplet loss needs (FaceNet section 3.2)."""

from __future__ import annotations

import torch
from torch import Tensor


def pk_order(labels: Tensor, batch_size: int, k: int = 4, seed: int = 0) -> Tensor:
    """An epoch's example order whose consecutive runs of ``batch_size`` hold groups of ``k`` images of one
    identity (P = batch_size // k groups per batch), so every anchor has positives in its batch.

    Each identity's images are shuffled and cut into groups of ``k`` (a last group of 2 … k−1 is kept, a single
    left-over image waits for the next epoch's shuffle); the groups are shuffled and laid end to end.

    Args:
        labels: Tensor[N] identity of each example.
        k: images per identity in a group (at least 2).
        seed: the order is a function of the seed alone (exact resume replays it).

    Returns:
        int64 Tensor[M] of example indices, M ≤ N.
    """
    g = torch.Generator().manual_seed(seed)
    k = max(2, min(k, batch_size))
    groups: list[Tensor] = []
    for ident in labels.unique().tolist():
        idx = (labels == ident).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        groups += [chunk for chunk in idx.split(k) if len(chunk) >= 2]
    if not groups:
        return torch.zeros(0, dtype=torch.long)
    order = torch.randperm(len(groups), generator=g).tolist()
    return torch.cat([groups[i] for i in order])
