"""``cnnkit evaluate`` on trained runs: output, saved predictions, ensembles of seeded runs, TTA, folder paths."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from cnnkit.config import DataConfig
from cnnkit.data import load_data
from cnnkit.evaluate import evaluate, load_predictions, score
from tests.conftest import make_image


@pytest.mark.parametrize("suffix", [".csv", ".npz"])
def test_saved_predictions_reproduce_the_reported_metrics(cli, digits_run, tmp_path, suffix):
    preds, report = tmp_path / f"p{suffix}", tmp_path / "m.json"
    code, out, _ = cli(
        "evaluate", digits_run, "--json", report, "--predictions", preds, "--gallery", tmp_path / "g.png"
    )
    assert code == 0 and "top-1 accuracy" in out and "macro average" in out and "most confused" in out
    m = json.loads(report.read_text())
    p = load_predictions(preds)  # the library's reader, for either format
    ids, true, probs, classes = p["ids"], p["true"], p["probs"], p["classes"].tolist()
    assert classes == [str(d) for d in range(10)] and len(true) == m["n"] == 359
    assert ids.tolist() == list(range(359)) and ids.dtype.kind == "i"
    assert (p["predicted"] == probs.argmax(1)).all()
    if suffix == ".csv":  # the documented columns, read without cnnkit
        header = next(csv.reader(preds.open(newline="")))
        assert header[:5] == ["index", "true", "predicted", "true_class", "predicted_class"] and len(header) == 15
    assert probs.sum(1) == pytest.approx(1.0)
    assert (probs.argmax(1) == true).mean() == pytest.approx(m["top1_accuracy"])
    assert -np.log(probs[np.arange(len(true)), true]).mean() == pytest.approx(m["loss"], rel=1e-5)
    again = score(torch.from_numpy(np.log(probs)), torch.from_numpy(true), classes)
    assert again["confusion"] == m["confusion"]
    assert all(again["per_class"][c] == pytest.approx(m["per_class"][c]) for c in classes)
    assert again["macro"] == pytest.approx(m["macro"]) and again["weighted"] == pytest.approx(m["weighted"])
    assert Image.open(tmp_path / "g.png").format == "PNG"


def test_ensemble_of_two_differently_seeded_runs(cli, seeded_runs, tmp_path):
    r1, r2 = seeded_runs  # seeds 1 and 2
    code, out, _ = cli("evaluate", r1, r2, "--ensemble", "--json", tmp_path / "e.json")
    assert code == 0 and "ensemble of 2 (prob average)" in out and "left out" in out
    m = json.loads((tmp_path / "e.json").read_text())
    assert [e["run"] for e in m["members"]] == [str(r1), str(r2)]
    assert m["excluded"] > 0 and m["n"] + m["excluded"] == 359
    assert all(e["n"] == m["n"] for e in m["members"]) and m["ensemble"]["n"] == m["n"]
    # The images kept are exactly the first run's test images that neither run trained on.
    digits = DataConfig(name="digits")
    test = load_data(digits, seed=1).test.images
    trained = {im.numpy().tobytes() for s in (1, 2) for im in load_data(digits, seed=s).train.images}
    unseen = [i for i, im in enumerate(test) if im.numpy().tobytes() not in trained]
    ev = evaluate([r1, r2], ensemble=True)
    assert ev.eval_set.ids == unseen
    # The ensemble is the mean of the members' probabilities, and its metrics are those of that mean.
    mean = (ev.members[0]["plain"].exp() + ev.members[1]["plain"].exp()) / 2
    assert ev.ensemble["plain"].exp() == pytest.approx(mean, rel=1e-5)
    assert score(mean.log(), ev.eval_set.labels, ev.eval_set.classes)["top1_accuracy"] == m["ensemble"]["top1_accuracy"]
    logit = evaluate([r1, r2], ensemble=True, mode="logit").ensemble["plain"]
    mean_log = (ev.members[0]["plain"] + ev.members[1]["plain"]) / 2
    assert logit.exp() == pytest.approx(mean_log.softmax(1), rel=1e-5)


def test_ensemble_of_a_run_with_itself_is_the_run(digits_run):
    m = evaluate([digits_run, digits_run], ensemble=True).metrics()
    assert m["excluded"] == 0 and m["n"] == 359
    assert m["ensemble"]["top1_accuracy"] == m["members"][0]["top1_accuracy"]
    assert m["ensemble"]["loss"] == pytest.approx(m["members"][0]["loss"], rel=1e-5)


def test_several_runs_without_ensemble_are_evaluated_one_by_one(cli, seeded_runs, tmp_path):
    code, out, _ = cli("evaluate", *seeded_runs, "--json", tmp_path / "m.json")
    assert code == 0 and out.count("test split of digits: 359 images") == 2
    assert [m["run"] for m in json.loads((tmp_path / "m.json").read_text())] == [str(r) for r in seeded_runs]
    assert all((r / "eval_test.json").exists() for r in seeded_runs)
    code, _, err = cli("evaluate", *seeded_runs, "--predictions", tmp_path / "p.csv")
    assert code == 2 and "--ensemble" in err and len(err.strip().splitlines()) == 1


def test_tta_is_refused_for_digits(cli, digits_run):
    code, _, err = cli("evaluate", digits_run, "--tta")
    assert code == 2 and "mirrored" in err and len(err.strip().splitlines()) == 1


def test_folder_run_predictions_name_files_and_tta_is_reported(cli, folder_run, tmp_path):
    code, out, _ = cli(
        "evaluate", folder_run, "--tta", "--predictions", tmp_path / "p.csv", "--json", tmp_path / "m.json"
    )
    assert code == 0 and "+ flip TTA" in out
    p = load_predictions(tmp_path / "p.csv")
    paths, true, probs = p["ids"].tolist(), p["true"], p["probs"]
    assert p["classes"].tolist() == ["cat", "dog"] and p["ids"].dtype.kind == "U"
    assert len(set(paths)) == len(paths) > 0
    assert [["cat", "dog"][t] for t in true] == [Path(p).parent.name for p in paths]  # each path's own class
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["top5_k"] == 2 and "tta" in m  # the saved predictions are the TTA ones
    assert (probs.argmax(1) == true).mean() == pytest.approx(m["tta"]["top1_accuracy"])


def test_runs_with_different_classes_cannot_be_combined(cli, digits_run, folder_run):
    code, _, err = cli("evaluate", digits_run, folder_run, "--ensemble")
    assert code == 2 and "classes" in err


def test_device_flag_runs_where_asked_and_a_missing_gpu_is_one_line(cli, digits_run, tmp_path):
    code, out, err = cli("evaluate", digits_run, "--device", "cpu", "--json", tmp_path / "cpu.json")
    assert code == 0 and "top-1 accuracy" in out, err
    assert cli("evaluate", digits_run, "--json", tmp_path / "auto.json")[0] == 0  # auto: the CPU on this machine
    cpu, auto = (json.loads((tmp_path / f"{d}.json").read_text()) for d in ("cpu", "auto"))
    assert cpu["top1_accuracy"] == auto["top1_accuracy"] and cpu["loss"] == pytest.approx(auto["loss"])
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: --device cuda would run")
    code, out, err = cli("evaluate", digits_run, "--device", "cuda")
    assert code == 2 and not out and len(err.strip().splitlines()) == 1
    assert "CUDA" in err and "--device cpu" in err


def test_a_new_folder_is_scored_whole_and_labelled_by_the_runs_class_names(cli, folder_run, tmp_path):
    """A folder of new images without train/val/test folders: every image is scored (not the 20 % a training run
    would carve off as its test split), and a folder holding only some of the run's classes is labelled by name."""
    new = tmp_path / "new"  # other images than the run's (its own would be left out, as trained on)
    for k, name in enumerate(("cat", "dog")):
        for i in range(7):
            make_image(new / name / f"{i}.png", 60 + 160 * k + i)
    assert cli("evaluate", folder_run)[0] == 0
    own_record = (folder_run / "eval_test.json").read_text()
    code, out, _ = cli("evaluate", folder_run, "--data", new, "--predictions", tmp_path / "all.csv")
    assert code == 0 and f"every image in {new.resolve()}: 14 images, 2 classes" in out and "left out" not in out
    assert json.loads((folder_run / "eval_all_new.json").read_text())["n"] == 14  # kept beside the run's own record
    assert (folder_run / "eval_test.json").read_text() == own_record
    assert len(load_predictions(tmp_path / "all.csv")["true"]) == 14
    for f in (folder_run.parent / "pets" / "cat").iterdir():  # the run's own cats: those it trained on are left out
        (new / "cat" / f"own-{f.name}").write_bytes(f.read_bytes())
    code, out, _ = cli("evaluate", folder_run, "--data", new)
    found = re.search(r": (\d+) images, .*\n  \((\d+) of 29 images left out: one of the runs trained on them\)", out)
    assert code == 0 and found and int(found[1]) + int(found[2]) == 29 and 14 < int(found[1]) < 29
    for f in (new / "cat").glob("own-*"):
        f.unlink()

    only_dogs = tmp_path / "dogs"  # the run's class 1 alone: sorted folders would have made it class 0
    (only_dogs / "dog").mkdir(parents=True)
    for f in (new / "dog").iterdir():
        (only_dogs / "dog" / f.name).write_bytes(f.read_bytes())
    code, out, _ = cli("evaluate", folder_run, "--data", only_dogs, "--json", tmp_path / "m.json")
    m = json.loads((tmp_path / "m.json").read_text())
    assert code == 0 and m["n"] == 7 and m["split"] == "all"
    assert m["per_class"]["dog"]["support"] == 7 and m["per_class"]["cat"]["support"] == 0
    assert m["per_class"]["cat"]["recall"] is None  # a class with no images has no recall: not counted as 0

    (only_dogs / "bird").mkdir()
    (only_dogs / "bird" / "0.png").write_bytes((new / "cat" / "0.png").read_bytes())
    code, _, err = cli("evaluate", folder_run, "--data", only_dogs)
    assert code == 2 and "expected the classes ['cat', 'dog']" in err and "found an extra folder 'bird'" in err
    code, _, err = cli("evaluate", folder_run, "--data", new, "--split", "val")
    assert code == 2 and "expected --split test" in err and "evaluated whole" in err


def test_the_runs_own_folder_named_again_is_still_its_test_split(cli, folder_run):
    own = yaml.safe_load((folder_run / "config.yaml").read_text())["data"]["name"]
    code, mine, _ = cli("evaluate", folder_run)
    code2, again, _ = cli("evaluate", folder_run, "--data", own)
    assert code == code2 == 0 and mine.splitlines()[0] == again.splitlines()[0]
    assert mine.splitlines()[0].startswith("test split of ")
