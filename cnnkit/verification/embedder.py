"""An embedding network on any zoo backbone: its pooled features, a linear layer to ``dim`` and L2
normalisation. FaceNet's own networks (``facenet_nn1``, ``facenet_nn2``) already end in their 128-d L2
embedding and are used as they are."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..models import create_model


def headless(name: str, in_chans: int, **kwargs) -> nn.Module:
    """The zoo model ``name`` without its classifier (``reset_classifier(0)``), for its features."""
    if name.startswith("facenet_"):
        return create_model(name, num_classes=0, in_chans=in_chans, **kwargs)
    model = create_model(name, num_classes=1, in_chans=in_chans, **kwargs)
    model.reset_classifier(0)
    return model


class Embedder(nn.Module):
    """``backbone`` (a contract model) -> L2-normalised embedding Tensor[B, dim].

    Args:
        backbone: from :func:`headless`; ``forward_head(f, pre_logits=True)`` gives Tensor[B, num_features].
        dim: embedding width (128 in FaceNet).
    """

    def __init__(self, backbone: nn.Module, dim: int = 128) -> None:
        super().__init__()
        self.backbone = backbone
        own = getattr(backbone, "embedding_dim", None) == dim  # FaceNet: the table's own fc + L2
        self.embed = None if own else nn.Linear(backbone.num_features, dim)
        self.dim = self.num_classes = dim
        self.mean, self.std, self.default_input = backbone.mean, backbone.std, backbone.default_input
        self.pretrained_cfg = getattr(backbone, "pretrained_cfg", None)

    def forward(self, x: Tensor) -> Tensor:
        """x: Tensor[B, C, H, W] normalised images -> Tensor[B, dim] with unit L2 norm."""
        h = self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True)
        return h if self.embed is None else F.normalize(self.embed(h.flatten(1)).float(), dim=1)

    def group_matcher(self) -> dict[str, list[str]]:
        """The backbone's groups; the embedding layer trains with the head."""
        groups = {g: [f"backbone.{p}" for p in ps] for g, ps in self.backbone.group_matcher().items()}
        groups["head"] = [*groups.get("head", []), *(["embed"] if self.embed is not None else [])]
        return groups
