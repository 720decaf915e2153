"""An embedding network on any zoo backbone. FaceNet's own networks (``facenet_nn1``, ``facenet_nn2``) already
end in their 128-d L2 embedding and are used as they are.

For the other backbones, the loss trains a projection (pooled features -> linear -> ``dim`` -> L2), and the
embedding a trained run gives is taken one step earlier, where more of the image survives: the last feature map
averaged over a ``grid`` × ``grid`` layout, centred and projected onto its ``dim`` principal components (fitted on
training images, :meth:`Embedder.fit_projection`; PCA-compressed CNN features, as in Babenko et al. 2014, "Neural
codes for image retrieval"). The trained projection specialises in the training identities: on Fashion-MNIST with 3
classes held out, its pair ROC AUC on the unseen classes was 0.71–0.77, the PCA embedding's 0.82–0.85 L2-normalised
and 0.92 as it is now, on the AMD EPYC the README names (``benchmarks/verify.py``).

The PCA embedding is not L2-normalised: unseen identities lie away from the training images' mean, and normalising
after centring on it throws away how far. Decided on identities the benchmark does not test: a smallcnn trained on
Fashion-MNIST classes 0–4 (4 epochs) gave pair ROC AUC 0.766 unnormalised, 0.745 normalised on the held-out classes
5–6 (on digits 7–9 it made no difference: 0.692 against 0.699). Its scale is fixed instead: the basis is divided by
the training images' RMS distance from their mean, so their embeddings lie at distance 1 from the centre on average
and squared distances between them are of the order of those on the unit sphere (2 on average). Runs saved before
this (``pca_l2`` absent from the card) keep their L2-normalised PCA embedding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models import create_model

GRID = 2  # the embedding's features: the last feature map averaged over 2×2 cells (where things are survives)


def headless(name: str, in_chans: int, **kwargs) -> nn.Module:
    """The zoo model ``name`` without its classifier (``reset_classifier(0)``), for its features."""
    if name.startswith("facenet_"):
        return create_model(name, num_classes=0, in_chans=in_chans, **kwargs)
    model = create_model(name, num_classes=1, in_chans=in_chans, **kwargs)
    model.reset_classifier(0)
    return model


@torch.no_grad()
def feature_channels(backbone: nn.Module) -> int:
    """Channels of ``backbone.forward_features`` at its ``default_input`` (one image, eval mode)."""
    was = backbone.training
    backbone.eval()
    try:
        return int(backbone.forward_features(torch.zeros(1, *backbone.default_input)).shape[1])
    finally:
        backbone.train(was)


class Embedder(nn.Module):
    """``backbone`` (a contract model) -> embedding Tensor[B, dim].

    In training mode the output is the trained projection, L2-normalised (what the loss sees). In eval mode, once
    :meth:`fit_projection` has run (the verify task fits it before every validation, so every saved checkpoint
    holds it), the output is the PCA embedding of the grid-pooled features, at the training images' scale and
    L2-normalised only when ``pca_l2`` (see the module docstring).

    Args:
        backbone: from :func:`headless`; ``forward_head(f, pre_logits=True)`` gives Tensor[B, num_features].
        dim: embedding width (128 in FaceNet).
        grid: cells per side of the pooled features of the PCA embedding; 0 for none (the trained projection is
            the embedding in eval mode too, as runs made before the PCA embedding existed).
        pca_l2: L2-normalise the PCA embedding (runs saved before it was left unnormalised).
    """

    def __init__(self, backbone: nn.Module, dim: int = 128, grid: int = GRID, *, pca_l2: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        own = getattr(backbone, "embedding_dim", None) == dim  # FaceNet: the table's own fc + L2
        self.embed = None if own else nn.Linear(backbone.num_features, dim)
        self.grid = 0 if own else grid
        self.pca_l2 = pca_l2
        if self.grid:
            width = feature_channels(backbone) * grid * grid
            self.register_buffer("centre", torch.zeros(width))  # mean of the training images' pooled features
            self.register_buffer("basis", torch.zeros(width, dim))  # their principal directions, one per column
            self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.dim = self.num_classes = dim
        self.mean, self.std, self.default_input = backbone.mean, backbone.std, backbone.default_input
        self.pretrained_cfg = getattr(backbone, "pretrained_cfg", None)

    def pooled(self, f: Tensor) -> Tensor:
        """Feature maps Tensor[B, C, h, w] -> Tensor[B, C·grid²], each channel averaged over grid × grid cells."""
        return F.adaptive_avg_pool2d(f, self.grid).flatten(1).float()

    def forward(self, x: Tensor) -> Tensor:
        """x: Tensor[B, C, H, W] normalised images -> Tensor[B, dim]: unit L2 norm, except the PCA embedding of a
        fitted model in eval mode without ``pca_l2``."""
        f = self.backbone.forward_features(x)
        if self.grid and not self.training and not self.fitted.is_meta and bool(self.fitted):  # meta: `explain`
            e = (self.pooled(f) - self.centre) @ self.basis
            return F.normalize(e, dim=1) if self.pca_l2 else e
        h = self.backbone.forward_head(f, pre_logits=True)
        return h if self.embed is None else F.normalize(self.embed(h.flatten(1)).float(), dim=1)

    @torch.no_grad()
    def features(self, x: Tensor) -> Tensor:
        """x: Tensor[B, C, H, W] normalised images -> the grid-pooled features Tensor[B, C·grid²] (float32)."""
        return self.pooled(self.backbone.forward_features(x))

    @torch.no_grad()
    def fit_projection(self, features: Tensor) -> None:
        """Fit the PCA embedding on ``features`` Tensor[N, C·grid²] (from :meth:`features`, training images): the
        centre is their mean, the basis their top ``dim`` principal directions (fewer when N − 1 or the width is
        smaller; the rest stay zero), divided by the features' RMS distance from the centre within them, so the
        training images' embeddings have mean squared norm 1. Deterministic, and it leaves the global random state
        as it was."""
        if not self.grid or len(features) < 2:
            return
        x = features.float().cpu()  # on the CPU, so forking its random state is enough
        mu = x.mean(0)
        q = min(self.dim, len(x) - 1, x.shape[1])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            _, _, v = torch.pca_lowrank(x - mu, q=q, center=False, niter=4)  # v: Tensor[width, q]
        self.centre.copy_(mu)
        self.basis.zero_()
        rms = ((x - mu) @ v).square().sum(1).mean().sqrt().clamp_min(1e-12)
        self.basis[:, :q] = v / rms
        self.fitted.fill_(True)

    def group_matcher(self) -> dict[str, list[str]]:
        """The backbone's groups; the embedding layer trains with the head."""
        groups = {g: [f"backbone.{p}" for p in ps] for g, ps in self.backbone.group_matcher().items()}
        groups["head"] = [*groups.get("head", []), *(["embed"] if self.embed is not None else [])]
        return groups
