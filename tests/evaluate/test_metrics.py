"""Every metric of ``score`` against values worked out by hand, or by an independent computation.

The hand-made case has 4 classes and 7 examples: "bird" is never predicted and "fish" has no examples
(but is predicted once).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from cnnkit.evaluate import classification_metrics, score
from cnnkit.evaluate.metrics import example_losses

CLASSES = ["cat", "dog", "bird", "fish"]
PROBS = [  # true class, probabilities; predicted = argmax
    (0, [0.6, 0.2, 0.1, 0.1]),  # cat  -> cat
    (0, [0.3, 0.4, 0.2, 0.1]),  # cat  -> dog
    (1, [0.1, 0.7, 0.1, 0.1]),  # dog  -> dog
    (1, [0.2, 0.3, 0.1, 0.4]),  # dog  -> fish
    (2, [0.5, 0.1, 0.3, 0.1]),  # bird -> cat
    (2, [0.1, 0.45, 0.4, 0.05]),  # bird -> dog
    (0, [0.8, 0.1, 0.05, 0.05]),  # cat  -> cat
]


@pytest.fixture(scope="module")
def m():
    labels = torch.tensor([y for y, _ in PROBS])
    log_probs = torch.tensor([p for _, p in PROBS], dtype=torch.float64).log()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning spam for the undefined cases
        return score(log_probs, labels, CLASSES)


def auc_by_pairs(scores: list[float], positive: list[bool]) -> float:
    """ROC-AUC as the probability that a positive outscores a negative (ties count 1/2)."""
    pos = [s for s, p in zip(scores, positive) if p]
    neg = [s for s, p in zip(scores, positive) if not p]
    return sum((a > b) + 0.5 * (a == b) for a in pos for b in neg) / (len(pos) * len(neg))


def test_accuracy_and_loss(m):
    assert m["n"] == 7
    assert m["top1_accuracy"] == pytest.approx(3 / 7) and m["top1_error"] == pytest.approx(4 / 7)
    assert m["top5_k"] == 4 and m["top5_accuracy"] == 1.0  # top-5 is top-K with K = 4
    p_true = [0.6, 0.3, 0.7, 0.3, 0.3, 0.4, 0.8]
    assert m["loss"] == pytest.approx(-sum(math.log(p) for p in p_true) / 7, rel=1e-6)


def test_per_class_precision_recall_f1(m):
    pc = m["per_class"]
    assert pc["cat"] == pytest.approx(
        {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3, "roc_auc": 11 / 12}
    )
    assert (pc["dog"]["precision"], pc["dog"]["recall"], pc["dog"]["f1"]) == pytest.approx((1 / 3, 1 / 2, 0.4))
    assert (pc["bird"]["precision"], pc["bird"]["recall"], pc["bird"]["f1"]) == (0.0, 0.0, 0.0)  # never predicted
    assert pc["fish"] == {"precision": 0.0, "recall": None, "f1": None, "support": 0, "roc_auc": None}  # no examples


def test_averages_leave_out_classes_without_examples(m):
    assert m["macro"]["precision"] == pytest.approx((2 / 3 + 1 / 3 + 0) / 3)
    assert m["macro"]["recall"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert m["macro"]["f1"] == pytest.approx((2 / 3 + 0.4 + 0) / 3)
    assert m["weighted"]["precision"] == pytest.approx((3 * 2 / 3 + 2 * 1 / 3) / 7)
    assert m["weighted"]["recall"] == pytest.approx(3 / 7)  # weighted recall is accuracy
    assert m["weighted"]["f1"] == pytest.approx((3 * 2 / 3 + 2 * 0.4) / 7)


def test_roc_auc_one_vs_rest(m):
    labels = [y for y, _ in PROBS]
    for c, name in enumerate(CLASSES[:3]):
        expected = auc_by_pairs([p[c] for _, p in PROBS], [y == c for y in labels])
        assert m["per_class"][name]["roc_auc"] == pytest.approx(expected)
    defined = [m["per_class"][n]["roc_auc"] for n in CLASSES[:3]]
    assert m["macro"]["roc_auc"] == pytest.approx(sum(defined) / 3)  # fish (undefined) left out


def test_confusion_matrix_and_most_confused(m):
    assert m["confusion"]["counts"] == [[2, 1, 0, 0], [0, 1, 0, 1], [1, 1, 0, 0], [0, 0, 0, 0]]
    norm = m["confusion"]["normalized"]
    assert np.array(norm[:3]) == pytest.approx(np.array([[2 / 3, 1 / 3, 0, 0], [0, 0.5, 0, 0.5], [0.5, 0.5, 0, 0]]))
    assert norm[3] == [None] * 4
    pairs = [(p["true"], p["predicted"], p["count"]) for p in m["most_confused"]]
    assert pairs == [("cat", "dog", 1), ("dog", "fish", 1), ("bird", "cat", 1), ("bird", "dog", 1)]
    assert [p["rate"] for p in m["most_confused"]] == pytest.approx([1 / 3, 1 / 2, 1 / 2, 1 / 2])


def test_topk_and_loss_on_random_logits_match_numpy():
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(200, 8, generator=g) * 3, torch.randint(0, 8, (200,), generator=g)
    m = classification_metrics(logits, labels)
    full = score(torch.log_softmax(logits, 1), labels, [f"c{i}" for i in range(8)])
    z, y = logits.double().numpy(), labels.numpy()
    rank = (z > z[np.arange(200), y][:, None]).sum(1)  # how many classes beat the true one
    log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
    for out in (m, full):
        assert out["top1_accuracy"] == pytest.approx((rank == 0).mean())
        assert out["top5_accuracy"] == pytest.approx((rank < 5).mean())
        assert out["loss"] == pytest.approx(-log_p[np.arange(200), y].mean(), rel=1e-5)
    losses = example_losses(torch.log_softmax(logits, 1), labels).numpy()
    assert losses == pytest.approx(-log_p[np.arange(200), y], rel=1e-5)


def test_empty_split():
    assert score(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), ["a", "b", "c"]) == {"n": 0}
