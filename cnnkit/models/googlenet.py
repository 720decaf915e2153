"""GoogLeNet (Szegedy et al. 2014, "Going Deeper with Convolutions"), torchvision's class.

22 layers with parameters: a stem, nine inception modules (1×1, 1×1→3×3, 1×1→5×5 and pool→1×1
branches, the 1×1 convs reducing width before the expensive ones), global average pooling, dropout, fc::

    conv1 7×7 /2, max /2, conv2 1×1, conv3 3×3, max /2  -> 28×28×192 (224 input)
    inception 3a, 3b, max /2                           -> 14×14×480
    inception 4a (aux1), 4b, 4c, 4d (aux2), 4e, max /2 -> 7×7×832
    inception 5a, 5b                                   -> 7×7×1024
    avg pool, dropout 0.2, fc                          -> num_classes

6,624,904 parameters for 1000 classes without the auxiliary classifiers (the published ~6.6–7 M; the
notes' "5 million" echoes the paper's "12 times fewer than AlexNet"), 13,004,888 with them. torchvision
adds BatchNorm to every conv and has no LRN; its module names are kept, so its checkpoints load.

Auxiliary classifiers (``aux_logits=True``): after inception 4a and 4d, each average pool to 4×4,
1×1 conv 128, FC 1024, dropout 0.7, FC num_classes. In training mode ``forward`` then returns
``AuxOutput(logits, [aux1, aux2])`` (see ``_contract.py``; the paper weights each auxiliary loss by 0.3);
in eval mode it returns the logits alone and the auxiliary heads are not run.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn
from torchvision import models as tvm

from ._registry import register_model
from ._torchvision import AuxClassifier


class GoogLeNet(AuxClassifier, tvm.GoogLeNet):
    head_path, stem_path = "fc", "conv1.conv"
    aux_taps: ClassVar[dict[str, str]] = {"inception4a": "aux1", "inception4d": "aux2"}
    trunk_end = "inception5b"

    def __init__(self, *, num_classes: int, in_chans: int, aux_logits: bool = False, dropout: float = 0.2) -> None:
        tvm.GoogLeNet.__init__(
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
        return {
            "stem": ["conv1", "conv2", "conv3"],
            "inception3": ["inception3a", "inception3b"],
            "inception4": [f"inception4{c}" for c in "abcde"],
            "inception5": ["inception5a", "inception5b"],
            "head": [n for n in ("aux1", "aux2") if getattr(self, n) is not None] + ["fc"],
        }


@register_model(family="GoogLeNet", paper="Szegedy et al. 2014, Going Deeper with Convolutions")
def googlenet(
    *, num_classes: int = 1000, in_chans: int = 3, aux_logits: bool = False, dropout: float = 0.2
) -> GoogLeNet:
    """GoogLeNet (Inception v1) with BatchNorm, 6.6 M parameters; ``aux_logits=True`` adds the two auxiliary heads."""
    return GoogLeNet(num_classes=num_classes, in_chans=in_chans, aux_logits=aux_logits, dropout=dropout)
