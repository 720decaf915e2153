"""The contract for torchvision's own classes: a mixin that keeps their module names (so their checkpoints load).

A family file subclasses the mixin first and torchvision's class second, and calls torchvision's
``__init__`` explicitly, then :meth:`TorchvisionClassifier.init_contract`::

    class ResNet(TorchvisionClassifier, tvm.ResNet):
        head_path, stem_path = "fc", "conv1"

        def __init__(self, block, layers, *, num_classes, in_chans):
            tvm.ResNet.__init__(self, block, layers, num_classes=num_classes)
            self.init_contract(num_classes=num_classes, in_chans=in_chans)

With the mixin first, ``forward`` is the contract's ``forward_head(forward_features(x))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from torch import Tensor, nn

from ..errors import CnnkitError
from ._contract import IMAGENET_MEAN, IMAGENET_STD, AuxOutput, Classifier, channel_stats, linear_head, pool_flat


def with_in_chans(conv: nn.Conv2d, in_chans: int) -> nn.Conv2d:
    """``conv`` itself for its own input width, else a fresh conv that reads ``in_chans`` channels."""
    if conv.in_channels == in_chans:
        return conv
    return nn.Conv2d(
        in_chans,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        bias=conv.bias is not None,
    )


def _downsamples(m: nn.Module) -> bool:
    layers = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
    return any(
        isinstance(c, layers) and max(c.stride if isinstance(c.stride, tuple) else (c.stride,)) > 1 for c in m.modules()
    )


def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters())


def resolution_groups(prefix: str, seq: nn.Module) -> dict[str, list[str]]:
    """Split the children of ``seq`` into ``stem, stage1, ...`` groups, a new group at each downsampling child.

    Children without parameters are left out, and so are groups that end up empty.
    """
    groups: list[list[str]] = []
    for i, (name, child) in enumerate(seq.named_children()):
        if i == 0 or (_downsamples(child) and groups[-1]):
            groups.append([])
        if _has_params(child):
            groups[-1].append(f"{prefix}.{name}")
    groups = [g for g in groups if g]
    return {("stem" if i == 0 else f"stage{i}"): g for i, g in enumerate(groups)}


class TorchvisionClassifier(Classifier):
    """Contract mixin for a torchvision class; set ``head_path`` (final Linear) and ``stem_path`` (first Conv2d)."""

    head_path: str = "fc"
    stem_path: str = "conv1"

    def init_contract(
        self,
        *,
        num_classes: int,
        in_chans: int,
        input_size: int | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        """Record the contract's attributes and swap the first conv for ``in_chans`` input channels.

        Args:
            num_classes: width of the final Linear (already built by torchvision).
            in_chans: input channels; the stem conv is rebuilt when it is not 3.
            input_size: default square input side, when it differs from the class's ``default_input``.
            mean: per-channel normalisation mean on 0–1 pixels (ImageNet's by default).
            std: per-channel normalisation std.
        """
        if num_classes < 1 or in_chans < 1:
            raise CnnkitError(
                f"expected num_classes >= 1 and in_chans >= 1, found num_classes={num_classes}, in_chans={in_chans}"
            )
        self.num_classes = num_classes
        self.mean, self.std = channel_stats(in_chans, mean, std)
        side = type(self).default_input[1:] if input_size is None else (input_size, input_size)
        self.default_input = (in_chans, *side)
        self.set_submodule(self.stem_path, with_in_chans(self.get_submodule(self.stem_path), in_chans))
        self.num_features = self.get_submodule(self.head_path).in_features

    def pre_head(self) -> list[nn.Module]:
        """Layers between global pooling and the final Linear (siblings before it in a ``Sequential``)."""
        parent = self.head_path.rpartition(".")[0]
        seq = self.get_submodule(parent) if parent else None
        return list(seq)[:-1] if isinstance(seq, nn.Sequential) else []

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """x: Tensor[N, C, h, w] -> Tensor[N, num_features] (pre_logits) or Tensor[N, num_classes]."""
        x = pool_flat(x)
        for layer in self.pre_head():
            x = layer(x)
        return x if pre_logits else self.get_submodule(self.head_path)(x)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.set_submodule(self.head_path, linear_head(self.num_features, num_classes))


class FeaturesClassifier(TorchvisionClassifier):
    """For torchvision classes built as ``features`` (a Sequential) then a ``classifier`` head."""

    def forward_features(self, x: Tensor) -> Tensor:
        """x: Tensor[N, in_chans, H, W] -> Tensor[N, C, h, w], the last feature map."""
        self.check_input(x)
        return self.features(x)

    def group_matcher(self) -> dict[str, list[str]]:
        return {**resolution_groups("features", self.features), "head": [self.head_path.split(".")[0]]}


class AuxClassifier(TorchvisionClassifier):
    """For torchvision classes with auxiliary heads (GoogLeNet, Inception-v3): the :class:`AuxOutput` convention.

    Set ``aux_taps`` (trunk layer -> auxiliary head attribute) and ``trunk_end`` (last layer before pooling).
    The trunk is every child up to ``trunk_end`` in registration order, auxiliary heads left out.
    """

    aux_taps: ClassVar[dict[str, str]]
    trunk_end: str

    def aux_heads(self) -> list[nn.Module]:
        """The auxiliary heads that exist (torchvision sets them to None without ``aux_logits``)."""
        return [m for name in self.aux_taps.values() if (m := getattr(self, name, None)) is not None]

    def _trunk(self, x: Tensor, with_aux: bool) -> tuple[Tensor, list[Tensor]]:
        self.check_input(x)
        aux: list[Tensor] = []
        for name, layer in self.named_children():
            if name in self.aux_taps.values():
                continue
            x = layer(x)
            head = getattr(self, self.aux_taps.get(name, ""), None)
            if with_aux and head is not None:
                aux.append(head(x))
            if name == self.trunk_end:
                return x, aux
        raise AssertionError(f"trunk_end {self.trunk_end!r} is not a child of {type(self).__name__}")

    def forward_features(self, x: Tensor) -> Tensor:
        """x: Tensor[N, in_chans, H, W] -> Tensor[N, C, h, w], the last feature map (auxiliary heads not run)."""
        return self._trunk(x, with_aux=False)[0]

    def forward(self, x: Tensor) -> Tensor | AuxOutput:  # type: ignore[override]
        """x: Tensor[N, C, H, W] -> Tensor[N, num_classes], or AuxOutput(logits, aux) when training with aux heads."""
        features, aux = self._trunk(x, with_aux=self.training)
        logits = self.forward_head(features)
        return AuxOutput(logits, aux) if aux else logits

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh main head and a fresh last Linear in every auxiliary head."""
        super().reset_classifier(num_classes)
        for head in self.aux_heads():
            name, fc = [(n, m) for n, m in head.named_children() if isinstance(m, nn.Linear)][-1]
            setattr(head, name, linear_head(fc.in_features, num_classes))
