"""The typed config: defaults, YAML presets, --set overrides and their errors."""

from __future__ import annotations

import pytest

from cnnkit.config import Config, build_config, dump_yaml, from_dict
from cnnkit.errors import CnnkitError


def test_precedence_defaults_yaml_set_flags(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("train:\n  epochs: 7\n  batch_size: 32\noptim:\n  lr: 0.2\n")
    cfg = build_config([f], ["train.batch_size=64", "optim.lr=1e-3"], train__epochs=2)
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.optim.lr) == (2, 64, 0.001)
    assert cfg.model.name == Config().model.name


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("train.epoch=3", "did you mean 'epochs'"),
        ("trian.epochs=3", "did you mean 'train'"),
        ("train.epochs=abc", "expects int"),
        ("epochs=3", "SECTION.KEY=VALUE"),
        ("train.channels_last=3", "expects bool"),
    ],
)
def test_bad_overrides(item, message):
    with pytest.raises(CnnkitError, match=message):
        build_config(sets=[item])


def test_optional_and_int_to_float():
    cfg = build_config(sets=["data.image_size=null", "optim.lr=1"])
    assert cfg.data.image_size is None and cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)


def test_yaml_round_trip():
    cfg = build_config(sets=["model.name=lenet5", "data.skip_bad=true"])
    import yaml

    assert from_dict(yaml.safe_load(dump_yaml(cfg))) == cfg


def test_bad_yaml_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("train: [1, 2\n")
    with pytest.raises(CnnkitError, match="valid YAML"):
        build_config([f])
    with pytest.raises(CnnkitError, match="no file"):
        build_config([tmp_path / "missing.yaml"])
