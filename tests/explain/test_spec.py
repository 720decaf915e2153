"""Networks described as YAML layer lists: LeNet-5's 61,706 parameters, the contract, errors, training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import cnnkit
from cnnkit.errors import CnnkitError
from cnnkit.explain import load_spec, summarize
from cnnkit.models import Classifier, count_parameters, parameter_groups
from cnnkit.models.spec import SPEC_DIR
from cnnkit.runcard import model_path

TINY = """
name: tiny
input: [1, 8, 8]
layers:
  - {type: conv, out: 8, kernel: 3, padding: 1}
  - {type: batchnorm}
  - {type: relu}
  - {type: pool, kernel: 2}
  - {type: conv, out: 16, kernel: 3, padding: 1}
  - {type: relu}
  - {type: pool, mode: avg, global: true}
  - {type: flatten}
  - {type: dropout, p: 0.1}
  - {type: fc}
  - {type: softmax}
"""


def write(tmp_path, text: str, name: str = "net.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_lenet5_spec_has_the_papers_parameter_count():
    model = cnnkit.create_model(str(SPEC_DIR / "lenet5.yaml"))
    assert isinstance(model, Classifier)
    assert count_parameters(model) == 61_706
    assert count_parameters(cnnkit.create_model("lenet5")) == 61_706
    assert model.default_input == (1, 28, 28) and model.fixed_input and model.num_features == 84
    x = torch.randn(2, 1, 28, 28)
    assert model(x).shape == (2, 10)
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, 84)
    assert model.forward_features(x).shape == (2, 120, 1, 1)


def test_bare_file_name_finds_the_bundled_spec_and_options_override():
    model = cnnkit.create_model("lenet5.yaml", num_classes=3, in_chans=3)
    assert model.default_input == (3, 28, 28) and model.num_classes == 3
    assert count_parameters(model) == 61_706 + 2 * 5 * 5 * 6 - 7 * (84 + 1)  # 2 more input channels, 7 fewer classes
    info = cnnkit.model_info("lenet5.yaml")
    assert info.family == "spec" and info.default_input == (1, 28, 28) and info.parameters() == 61_706


def test_contract_groups_and_reset(tmp_path):
    model = cnnkit.create_model(write(tmp_path, TINY), num_classes=5)
    assert not model.fixed_input  # global pooling: any size fits
    groups = parameter_groups(model)
    assert list(groups) == ["stem", "stage1", "head"]
    assert sum(p.numel() for g in groups.values() for _, p in g) == count_parameters(model)
    model.reset_classifier(7)
    assert model(torch.randn(2, 1, 12, 12)).shape == (2, 7)


def test_summary_of_alexnet_spec_equals_registered_alexnet():
    with torch.device("meta"):
        spec, ref = cnnkit.create_model("alexnet.yaml"), cnnkit.create_model("alexnet")
    a, b = summarize(spec), summarize(ref)
    assert (a.params, a.macs) == (b.params, b.macs) == (62_378_344, 1_135_256_096)
    assert [r.shape for r in a.rows] == [r.shape for r in b.rows]


@pytest.mark.parametrize(
    "layers, message",
    [
        ("[{type: conv, out: 4, kernel: 3}, {type: flaten}, {type: fc}]", "did you mean 'flatten'"),
        ("[{type: conv, out: 4, kernl: 3}, {type: flatten}, {type: fc}]", "did you mean 'kernel'"),
        ("[{type: conv, out: 4}, {type: flatten}, {type: fc}]", "expected kernel in layer 1"),
        ("[{type: conv, out: 4, kernel: 3}, {type: fc}]", "expected a flatten layer before the first fc"),
        ("[{type: conv, out: 4, kernel: 3}, {type: flatten}, {type: fc}, {type: relu}]", "to be fc"),
        ("[{type: flatten}, {type: fc}, {type: fc}]", "expected 'out' on every fc but the last"),
        ("[{type: conv, out: 4, kernel: 9}, {type: flatten}, {type: fc}]", r"\(8 \+ 2·0 − 9\)/1 \+ 1 = 0"),
        ("[{type: conv, out: 4, kernel: '3'}, {type: flatten}, {type: fc}]", "kernel to be an integer ≥ 1"),
        ("[{type: pool, kernel: 2, mode: mean}, {type: flatten}, {type: fc}]", "pool mode max or avg"),
    ],
)
def test_spec_errors_say_what_to_fix(tmp_path, layers, message):
    path = write(tmp_path, f"input: [1, 8, 8]\nlayers: {layers}\n")
    with pytest.raises(CnnkitError, match=message):
        cnnkit.create_model(path)


def test_missing_spec_file_lists_the_bundled_ones():
    with pytest.raises(CnnkitError, match="bundled specs: alexnet.yaml, lenet5.yaml"):
        load_spec("nope.yaml")


def test_fixed_spec_refuses_another_size_with_the_layer_named():
    model = cnnkit.create_model("lenet5.yaml")
    with pytest.raises(CnnkitError, match=r"layer f6 \(fc\) .* found 120×2×2 = 480 from 1×32×32"):
        model(torch.zeros(1, 1, 32, 32))


def test_train_a_spec_and_predict_from_its_run(tmp_path, cli):
    spec = write(tmp_path, TINY, "tiny.yaml")
    out = tmp_path / "run"
    code, _, err = cli("train", "--model", spec, "--data", "digits", "--epochs", "1", "--out", out, "--quiet")
    assert code == 0, err
    Path(spec).unlink()  # the run carries its own copy of the spec
    run = cnnkit.load(out)
    assert (out / "model_spec.yaml").is_file() and model_path(run.card, out) == str(out / "model_spec.yaml")
    assert len(run.classes) == 10
    digit = (torch.rand(8, 8) * 255).to(torch.uint8)[None]
    assert run.predict_proba([digit]).shape == (1, 10)
