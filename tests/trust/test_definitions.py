"""One definition of each figure: macro-F1 everywhere, the schedule's name, the registry's option errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.evaluate import score
from cnnkit.evaluate.metrics import macro_f1
from cnnkit.models import _registry, create_model
from cnnkit.runtime import Normalize
from cnnkit.tasks.classify import Classify

# 4 classes; "fish" (3) has no examples but is predicted once (torchmetrics' macro counts it as an F1 of 0, the
# report leaves it out); "bird" (2) has examples and is never predicted (F1 0, counted by both)
LABELS = torch.tensor([0, 0, 0, 1, 1, 2, 2])
PRED = torch.tensor([0, 0, 3, 1, 0, 1, 0])
F1 = {"cat": 4 / 7, "dog": 0.5, "bird": 0.0}  # by hand, 2PR/(P+R): cat P 2/4 R 2/3, dog P 1/2 R 1/2


def test_macro_f1_is_the_mean_over_present_classes():
    assert macro_f1(PRED, LABELS, 4) == pytest.approx(sum(F1.values()) / 3)  # fish left out, not counted as 0
    assert macro_f1(PRED.numpy(), LABELS.numpy(), 4) == macro_f1(PRED, LABELS, 4)
    assert math.isnan(macro_f1(torch.zeros(0), torch.zeros(0), 4))
    log_probs = torch.log_softmax(torch.nn.functional.one_hot(PRED, 4).float() * 5, 1)
    assert score(log_probs, LABELS, ["cat", "dog", "bird", "fish"])["macro"]["f1"] == macro_f1(PRED, LABELS, 4)


class Fixed(nn.Module):
    """A 'model' whose logits are given: validation sees exactly PRED."""

    num_classes = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(x.flatten(1)[:, 0].long(), 4).float()


def test_model_selection_uses_the_reports_macro_f1():
    images = PRED.to(torch.uint8).view(-1, 1, 1, 1)  # the image carries the prediction
    dataset = torch.utils.data.TensorDataset(images, LABELS)
    m = Classify().validate(Fixed(), dataset, Normalize((0.0,), (1 / 255,), torch.device("cpu"), False), None)
    assert m["val_macro_f1"] == pytest.approx(sum(F1.values()) / 3)
    assert m["val_accuracy"] == pytest.approx(3 / 7)
    assert m["val_macro_f1"] != pytest.approx((4 / 7 + 0.5) / 4)  # not torchmetrics' macro over all 4 classes


def test_unknown_model_option_is_a_clear_error():
    with pytest.raises(CnnkitError, match=r"'lenet5' takes \(num_classes, in_chans\), found dropout") as e:
        create_model("lenet5", dropout=0.5)
    assert "\n" not in str(e.value)


def test_a_type_error_inside_a_builder_is_not_called_an_unknown_option(monkeypatch):
    def broken(*, num_classes: int = 10, in_chans: int = 1) -> nn.Module:
        return nn.Linear(in_chans, "ten")  # a bug inside the builder, not a user's option

    info = _registry.ModelInfo("broken", "Test", "none", (1, 8, 8), broken)
    monkeypatch.setitem(_registry._REGISTRY, "broken", info)
    with pytest.raises(TypeError) as e:
        create_model("broken", num_classes=3)
    assert not isinstance(e.value, CnnkitError) and "does not take" not in str(e.value)
    assert e.traceback[-1].name != "check_options"  # raised where the bug is
