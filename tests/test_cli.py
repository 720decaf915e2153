"""The command line: version, model listing, usage errors, and the train -> evaluate -> predict path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cnnkit


def test_version(cli):
    code, out, _ = cli("--version")
    assert code == 0 and out.strip() == f"cnnkit {cnnkit.__version__}"


def test_python_dash_m_entry_point():
    r = subprocess.run([sys.executable, "-m", "cnnkit", "--version"], capture_output=True, text=True, check=False)
    assert r.returncode == 0 and "cnnkit" in r.stdout


def test_models_lists_names_and_parameter_counts(cli):
    code, out, _ = cli("models", "lenet*")
    assert code == 0
    assert "lenet5" in out and "61,706" in out


def test_models_json(cli):
    code, out, _ = cli("models", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0
    assert rows["lenet5"]["parameters"] == 61706
    assert rows["smallcnn"]["default_input"] == [1, 28, 28]
    assert {"family", "paper"} <= set(rows["lenet5"])


def test_usage_error_is_one_line_exit_2(cli):
    code, _, err = cli("train", "--epochs", "many")
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unknown_model_suggests_a_name(cli):
    code, _, err = cli("train", "--model", "lenet", "--data", "digits")
    assert code == 2
    assert "did you mean lenet5" in err and len(err.strip().splitlines()) == 1


def test_missing_data_path(cli, tmp_path):
    code, _, err = cli("train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r"))
    assert code == 2 and "no folder" in err and len(err.strip().splitlines()) == 1


def test_unknown_config_key(cli, tmp_path):
    code, _, err = cli("train", "--data", "digits", "--set", "train.epoch=1")
    assert code == 2 and "did you mean 'epochs'" in err


def test_evaluate_and_predict_a_run(cli, digits_run, tmp_path):
    code, out, _ = cli("evaluate", digits_run, "--json", tmp_path / "m.json")
    assert code == 0 and "top-1 accuracy" in out
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["n"] == 359 and m["top1_accuracy"] > 0.5 and m["top5_accuracy"] >= m["top1_accuracy"]
    assert json.loads((digits_run / "eval_test.json").read_text())["top1_accuracy"] == m["top1_accuracy"]


def test_evaluate_missing_run(cli, tmp_path):
    code, _, err = cli("evaluate", tmp_path / "missing")
    assert code == 2 and "run directory, found nothing at" in err
    (tmp_path / "model.onnx").write_bytes(b"an exported model")
    code, _, err = cli("evaluate", tmp_path / "model.onnx")
    assert code == 2 and "found a file at" in err and "`cnnkit predict`, `serve` or `verify`" in err
    code, _, err = cli("explain", tmp_path / "model.onnx")
    assert code == 2 and "found the ONNX file" in err and "explain the run it was exported from" in err


def test_visualize_units_is_reached_as_two_words(cli, digits_run, tmp_path):
    code, _, err = cli("visualize", "units", tmp_path / "missing", "--layer", "stem.0")
    assert code == 2 and "expected a run directory" in err
    code, out, err = cli("visualize", "units", digits_run, "--layer", "stem.0", "--channels", "2", "--top", "2",
                         "--out", tmp_path / "u.png", "--quiet")  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "u.png").is_file() and "wrote" in out


def test_predict_takes_a_folder_and_reports_images_per_second(cli, digits_run, tmp_path):
    from .conftest import make_image

    for i in range(3):
        make_image(tmp_path / "imgs" / f"{i}.png", 20 * i, size=(8, 8))
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    code, out, err = cli("predict", digits_run, tmp_path / "imgs", "--json")
    assert code == 0, err
    assert [Path(r["image"]).name for r in json.loads(out)] == ["0.png", "1.png", "2.png"]
    assert "3 images in" in err and "images/s" in err
    code, _, err = cli("predict", digits_run, tmp_path / "empty_dir_missing")
    assert code == 2 and "no such file" in err
