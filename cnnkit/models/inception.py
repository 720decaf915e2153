"""Inception-v3 (Szegedy et al. 2016, "Rethinking the Inception Architecture"), torchvision's class.

For a 3×299×299 input::

    stem: conv 3×3 /2, conv 3×3, conv 3×3, max /2, conv 1×1, conv 3×3, max /2   -> 35×35×192
    Mixed_5b, 5c, 5d (factorised 5×5 as two 3×3)                               -> 35×35×288
    Mixed_6a (grid reduction), 6b–6e (factorised 7×7 as 1×7 + 7×1)   (aux)     -> 17×17×768
    Mixed_7a (grid reduction), 7b, 7c (expanded filter banks)                  -> 8×8×2048
    avg pool, dropout 0.5, fc                                                  -> num_classes

23,834,568 parameters for 1000 classes without the auxiliary head (27,161,264 with it). Works at any
input from 75×75 up (the auxiliary head needs 17×17 after Mixed_6e, i.e. about 299×299, in training).
Module names are torchvision's, so its checkpoints load.

Auxiliary classifier (``aux_logits=True``): after Mixed_6e, avg pool 5×5/3, conv 1×1 128, conv 5×5 768,
fc num_classes. In training mode ``forward`` returns ``AuxOutput(logits, [aux])`` (see ``_contract.py``;
torchvision's recipe weights the auxiliary loss by 0.4); in eval mode the logits alone.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn
from torchvision import models as tvm

from ._registry import register_model
from ._torchvision import AuxClassifier


class Inception3(AuxClassifier, tvm.Inception3):
    default_input = (3, 299, 299)
    head_path, stem_path = "fc", "Conv2d_1a_3x3.conv"
    aux_taps: ClassVar[dict[str, str]] = {"Mixed_6e": "AuxLogits"}
    trunk_end = "Mixed_7c"

    def __init__(self, *, num_classes: int, in_chans: int, aux_logits: bool = False, dropout: float = 0.5) -> None:
        tvm.Inception3.__init__(
            self,
            num_classes=num_classes,
            aux_logits=aux_logits,
            transform_input=False,
            init_weights=True,
            dropout=dropout,
        )
        self.init_contract(num_classes=num_classes, in_chans=in_chans)

    def pre_head(self) -> list[nn.Module]:
        return [self.dropout]

    def group_matcher(self) -> dict[str, list[str]]:
        stem = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3"]
        return {
            "stem": stem,
            "mixed5": ["Mixed_5b", "Mixed_5c", "Mixed_5d"],
            "mixed6": ["Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"],
            "mixed7": ["Mixed_7a", "Mixed_7b", "Mixed_7c"],
            "head": (["AuxLogits"] if self.AuxLogits is not None else []) + ["fc"],
        }


@register_model(
    family="Inception", paper="Szegedy et al. 2016, Rethinking the Inception Architecture", default_input=(3, 299, 299)
)
def inception_v3(
    *, num_classes: int = 1000, in_chans: int = 3, aux_logits: bool = False, dropout: float = 0.5
) -> Inception3:
    """Inception-v3, 23.8 M parameters (27.2 M with ``aux_logits=True``), 299×299 input."""
    return Inception3(num_classes=num_classes, in_chans=in_chans, aux_logits=aux_logits, dropout=dropout)
