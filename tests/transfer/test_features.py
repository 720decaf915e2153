"""Frozen features + linear classifiers, and ImageNet predictions on real photographs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from cnnkit import transfer
from cnnkit.predict import Predictor
from tests.conftest import make_folder
from tests.transfer.conftest import needs_lite0

CATS = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat", "lynx"}
# china.jpg is a temple roof among trees; flower.jpg a white-petalled flower head
PLAUSIBLE = {
    "chelsea": CATS,
    "coffee": {"espresso", "cup", "coffee mug", "eggnog", "consomme"},
    "china": {"palace", "bell cote", "monastery", "pagoda", "stupa", "lakeside", "boathouse", "church", "dome"},
    "flower": {"daisy", "pot", "vase", "bee", "sea anemone", "hen-of-the-woods", "cardoon", "mushroom"},
}


@pytest.mark.parametrize("kind", transfer.CLASSIFIERS)
def test_linear_probe_on_digit_pixels(kind: str) -> None:
    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=300, random_state=0, stratify=y)
    features = {"train_features": x_tr, "train_labels": y_tr, "val_features": x[:0], "val_labels": y[:0],
                "test_features": x_te, "test_labels": y_te}  # fmt: skip
    metrics = transfer.linear_probe(features, [str(i) for i in range(10)], kind)
    assert set(metrics) == {"test"} and metrics["test"]["n"] == 300
    assert metrics["test"]["top1_accuracy"] > 0.93 and metrics["test"]["top5_accuracy"] > 0.99
    assert metrics["test"]["macro"]["f1"] > 0.93


def test_log_probs_cover_classes_unseen_in_training() -> None:
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    clf = transfer.fit_linear("logistic", x, np.array([0, 0, 2, 2]))
    log_probs = transfer.class_log_probs(clf, x, num_classes=3)
    assert log_probs.shape == (4, 3) and torch.allclose(log_probs.exp().sum(1), torch.ones(4))
    assert (log_probs[:, 1].exp() < 1e-9).all() and log_probs.argmax(1).tolist() == [0, 0, 2, 2]
    assert torch.allclose(log_probs[:, [0, 2]].exp().double(), torch.from_numpy(clf.predict_proba(x)), atol=1e-6)


@needs_lite0
def test_features_command_writes_features_and_scores_a_classifier(cli, tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data", classes=("dark", "mid", "light"), per_class=10, mode="RGB")
    out, metrics = tmp_path / "f.npz", tmp_path / "m.json"
    args = ["--data", data, "--image-size", "32", "--out", out, "--classifier", "logistic", "--json", metrics]
    code, stdout, err = cli("features", "--model", "efficientnet_lite0", "--pretrained", *args)
    assert code == 0, err
    f = np.load(out)
    n = {s: len(f[f"{s}_labels"]) for s in ("train", "val", "test")}
    assert sum(n.values()) == 30 and n["test"] == 6 and f["train_features"].shape == (n["train"], 1280)
    assert f["classes"].tolist() == ["dark", "light", "mid"] and str(f["model"]) == "efficientnet_lite0"
    m = json.loads(metrics.read_text())
    assert m["test"]["n"] == 6 and m["test"]["top1_accuracy"] >= 5 / 6
    assert "top-1 accuracy" in stdout and "logistic on efficientnet_lite0 features (test)" in stdout
    code, _, err = cli("features", "--model", "efficientnet_lite0", "--data", data, "--out", out)
    assert code == 2 and "expected --pretrained or --weights" in err


@needs_lite0
def test_features_come_from_the_folded_copy_and_match_the_model(tmp_path: Path) -> None:
    from cnnkit.config import DataConfig
    from cnnkit.data import load_data
    from cnnkit.models import create_model
    from cnnkit.runtime import Normalize

    folder = make_folder(tmp_path / "data", classes=("dark", "light"), per_class=6, mode="RGB")
    data = load_data(DataConfig(name=str(folder)), image_size=(32, 32))
    model = create_model("efficientnet_lite0", pretrained=True).eval()
    got = transfer.features_for(model, data)["train_features"]
    want, _ = transfer.extract_features(model, data.train, Normalize(model.mean, model.std, torch.device("cpu"), False))
    assert np.abs(want).max() > 0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 49  # the model keeps its layers


@needs_lite0
def test_imagenet_predictions_for_sample_photos(photos: dict[str, np.ndarray]) -> None:
    predictor = Predictor.from_pretrained("efficientnet_lite0")
    assert len(predictor.classes) == 1000 and predictor.card.preprocessing["center_crop"] == [224, 224]
    preds = dict(zip(photos, predictor.predict(photos.values(), topk=5)))
    assert preds["chelsea"].label in CATS and preds["coffee"].label == "espresso"
    for name, pred in preds.items():
        assert {label for label, _ in pred.topk} & PLAUSIBLE[name], (name, pred.topk)


@needs_lite0
def test_predict_command_without_a_run(cli, tmp_path: Path, photos: dict[str, np.ndarray]) -> None:
    path = tmp_path / "chelsea.jpg"
    Image.fromarray(photos["chelsea"]).save(path)
    code, out, err = cli("predict", "--model", "efficientnet_lite0", "--pretrained", path, "--topk", "5", "--json")
    assert code == 0, err
    (result,) = json.loads(out)
    assert result["label"] in CATS and len(result["topk"]) == 5
    code, _, err = cli("predict", "--pretrained", path)
    assert code == 2 and "expected --model NAME" in err
    code, _, err = cli("predict", "--model", "efficientnet_lite0", path)
    assert code == 2 and "expected --pretrained or --weights" in err
