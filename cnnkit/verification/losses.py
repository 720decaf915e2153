"""Metric-learning losses on L2-normalised embeddings, with the pairs and triplets mined inside the batch."""

from __future__ import annotations

import torch
from torch import Tensor


def pairwise_sq_dist(emb: Tensor) -> Tensor:
    """Squared Euclidean distances: emb Tensor[B, D] -> Tensor[B, B] (clamped at 0 against rounding)."""
    sq = emb.square().sum(1)
    return (sq[:, None] + sq[None, :] - 2 * emb @ emb.T).clamp(min=0)


def triplet_semihard_loss(emb: Tensor, labels: Tensor, margin: float = 0.2) -> Tensor:
    """FaceNet's triplet loss with online semi-hard negative mining (Schroff et al. 2015, section 3.2).

    Every anchor-positive pair (a, p) of the batch is used. Its negative is the closest one that is still
    farther than the positive, ``d(a, p) < d(a, n)`` (semi-hard: inside the margin or just outside it); when
    the anchor has none, the farthest negative (the easiest, as TensorFlow Addons' ``triplet_semihard_loss``).
    Distances are squared Euclidean, as in the paper; ``margin`` is its α.

    Args:
        emb: Tensor[B, D] embeddings (L2-normalised).
        labels: Tensor[B] identities.

    Returns:
        The mean of ``max(0, d(a, p) − d(a, n) + margin)`` over the anchor-positive pairs (0 when there are none).
    """
    d = pairwise_sq_dist(emb.float())
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=emb.device)
    pos = same & ~eye  # [B, B] anchor-positive pairs
    if not pos.any() or same.all():
        return emb.sum() * 0
    a, p = pos.nonzero(as_tuple=True)  # [T]
    d_ap = d[a, p]  # [T]
    d_an = d[a]  # [T, B] distances from each pair's anchor
    neg = ~same[a]  # [T, B]
    inf = torch.finfo(d.dtype).max
    outside = neg & (d_an > d_ap[:, None])
    semi = torch.where(outside, d_an, torch.full_like(d_an, inf)).min(1).values
    easiest = torch.where(neg, d_an, torch.full_like(d_an, -inf)).max(1).values
    d_neg = torch.where(outside.any(1), semi, easiest)
    return (d_ap - d_neg + margin).clamp(min=0).mean()


def contrastive_loss(emb: Tensor, labels: Tensor, margin: float = 1.0) -> Tensor:
    """The contrastive (siamese) loss of Hadsell, Chopra & LeCun 2006 over every pair of the batch.

    Same identity: ``d²``; different: ``max(0, margin − d)²``, with d the Euclidean distance (on the unit
    sphere it lies in [0, 2]). Matched and mismatched pairs are averaged separately, then summed, so the many
    mismatched pairs of a batch don't drown the few matched ones.

    Args:
        emb: Tensor[B, D] embeddings; labels: Tensor[B] identities.
    """
    d2 = pairwise_sq_dist(emb.float())
    same = labels[:, None] == labels[None, :]
    upper = torch.ones_like(same).triu(1)
    pos, neg = same & upper, ~same & upper
    d = (d2 + 1e-12).sqrt()
    loss = emb.sum() * 0
    if pos.any():
        loss = loss + d2[pos].mean()
    if neg.any():
        loss = loss + (margin - d[neg]).clamp(min=0).square().mean()
    return loss
