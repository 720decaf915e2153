"""cnnkit's torchvision families give torchvision's logits: same weights, same input, eval and train mode.

cnnkit subclasses torchvision's classes and rewrites ``forward`` (``forward_features`` + ``forward_head``, the
auxiliary heads walked in registration order); torchvision's ImageNet checkpoints only give the right answers
through cnnkit while this holds. Train mode is compared with dropout and stochastic depth off (``p = 0``); the
functional dropout inside torchvision's GoogLeNet auxiliary heads cannot be switched off, so both forwards start
from the same RNG seed and draw the same masks.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torchvision.ops import StochasticDepth

from cnnkit.models import AuxOutput, create_model, list_models

NUM_CLASSES = 10
ATOL = 1e-5
# Registered models built on a torchvision class that torchvision has no builder for (no reference to compare to).
NO_TORCHVISION_BUILDER = {"se_resnet50", "vgg11_lrn", "vgg16_c"}
AUX = {"googlenet", "inception_v3"}  # built with their auxiliary heads, compared in train mode too
SIDE = {"inception_v3": 299}  # smallest side whose auxiliary head still has a map to pool; fixed models: default
BATCH = {"inception_v3": 2}  # its auxiliary head's BatchNorm sees a 1×1 map: train mode needs two values
# VGG runs at its fixed 224×224 (2–5 s a case on one core); vgg11 and vgg11_bn stay in the fast suite.
SLOW = {"vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"}


def _torchvision_subclasses() -> list[str]:
    names = []
    for name in list_models():
        with torch.device("meta"):
            model = create_model(name)
        if any(c.__module__.startswith("torchvision.models") for c in type(model).__mro__):
            names.append(name)
    return names


TV_FAMILIES = _torchvision_subclasses()
COMPARED = sorted(set(TV_FAMILIES) - NO_TORCHVISION_BUILDER)


def test_every_torchvision_subclass_is_compared_or_has_no_torchvision_builder() -> None:
    builders = set(torchvision.models.list_models(module=torchvision.models))
    assert set(COMPARED) <= builders
    assert set(TV_FAMILIES) >= NO_TORCHVISION_BUILDER and not NO_TORCHVISION_BUILDER & builders
    assert len(COMPARED) >= 25  # resnets, VGGs, DenseNet, EfficientNets, MobileNets, ShuffleNet, GoogLeNet, Inception


def _randomize_norms(model: nn.Module, gen: torch.Generator) -> None:
    """Non-trivial BatchNorm statistics and affine parameters, so eval mode really exercises them."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2, generator=gen)
            m.running_var.uniform_(0.5, 1.5, generator=gen)
            m.weight.data.uniform_(0.5, 1.5, generator=gen)
            m.bias.data.uniform_(-0.2, 0.2, generator=gen)


def _no_dropout(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, (nn.Dropout, StochasticDepth)):
            m.p = 0.0


def _pair(name: str) -> tuple[nn.Module, nn.Module]:
    """(cnnkit's model, torchvision's model) holding equal weights."""
    aux = {"aux_logits": True} if name in AUX else {}
    torch.manual_seed(0)
    ours = create_model(name, num_classes=NUM_CLASSES, **aux)
    _randomize_norms(ours, torch.Generator().manual_seed(1))
    extra = {"transform_input": False, "init_weights": False} if aux else {}
    with torch.device("meta"):
        theirs = torchvision.models.get_model(name, weights=None, num_classes=NUM_CLASSES, **aux, **extra)
    theirs.load_state_dict({k: v.clone() for k, v in ours.state_dict().items()}, strict=True, assign=True)
    return ours, theirs


def _logits(out: object) -> list[torch.Tensor]:
    """Main logits first, then the auxiliary heads' (cnnkit's AuxOutput or torchvision's namedtuples)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, AuxOutput):
        return [out.logits, *out.aux]
    fields = [f for f in out._fields if f != "logits"]  # GoogLeNetOutputs(logits, aux_logits2, aux_logits1)
    return [out.logits, *reversed([getattr(out, f) for f in fields])]


def _compare(ours: nn.Module, theirs: nn.Module, x: torch.Tensor) -> float:
    torch.manual_seed(2)
    a = _logits(ours(x))
    torch.manual_seed(2)
    b = _logits(theirs(x))
    assert len(a) == len(b) and all(u.shape == v.shape == (len(x), NUM_CLASSES) for u, v in zip(a, b))
    diff = max(float((u - v).abs().max()) for u, v in zip(a, b))
    scale = max(float(v.abs().max()) for v in b)
    assert diff <= ATOL * max(1.0, scale), f"max |cnnkit − torchvision| = {diff:.3g} (logits up to {scale:.3g})"
    return diff


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in COMPARED])
@torch.no_grad()
def test_logits_equal_torchvision_in_eval_and_train_mode(name: str, record_property) -> None:
    ours, theirs = _pair(name)
    c, h, w = ours.default_input
    side = SIDE.get(name, h if ours.fixed_input else 64)
    x = torch.randn(
        BATCH.get(name, 1), c, side, side if not ours.fixed_input else w, generator=torch.Generator().manual_seed(3)
    )
    eval_diff = _compare(ours.eval(), theirs.eval(), x)
    _no_dropout(ours)
    _no_dropout(theirs)
    train_diff = _compare(ours.train(), theirs.train(), x)
    record_property("max_abs_diff", {"eval": eval_diff, "train": train_diff})
    print(f"{name}: eval {eval_diff:.3g}, train {train_diff:.3g}")
