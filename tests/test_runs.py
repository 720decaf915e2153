"""One owner for the run directory: the typed run card, the saved split, resolved paths, and the public entry
points in a fresh Python process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnnkit.errors import CnnkitError
from cnnkit.runcard import RunCard, read_card

from .conftest import make_folder


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory) -> tuple[Path, Path]:
    """A run trained on a relative folder path, from a working directory of its own."""
    from cnnkit.cli import main

    base = tmp_path_factory.mktemp("work")
    make_folder(base / "pets", per_class=10)
    cwd = os.getcwd()
    os.chdir(base)
    try:
        assert main(["train", "--data", "pets", "--epochs", "1", "--image-size", "12", "--out", "run", "--quiet"]) == 0
    finally:
        os.chdir(cwd)
    return base / "run", base / "pets"


def test_run_card_round_trip_and_split_record(folder_run):
    run, data = folder_run
    card = read_card(run)
    assert card.task == "classify" and card.schema == 2 and card.data == str(data.resolve())
    assert RunCard.from_dict(card.to_dict()) == card
    assert set(card.split) == {"train", "val", "test"} and sum(s["n"] for s in card.split.values()) == 20
    members = json.loads((run / "split.json").read_text())
    assert len(members["test"]) == card.split["test"]["n"] and all(Path(p).is_absolute() for p in members["test"])
    assert card.precision_reason.startswith("auto:")


def test_a_run_evaluates_from_any_working_directory(folder_run, cli, tmp_path, monkeypatch):
    run, _ = folder_run
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("evaluate", run, "--split", "test")
    assert code == 0, err
    assert "test split" in out


def test_changed_data_is_refused_in_one_line(folder_run, cli, tmp_path):
    run, data = folder_run
    test_files = json.loads((run / "split.json").read_text())["test"]
    victim = Path(test_files[0])
    original = victim.read_bytes()
    try:
        from .conftest import make_image

        make_image(victim, 7)  # the same file name with other pixels
        code, _, err = cli("evaluate", run)
        assert code == 2 and "data changed since training" in err and len(err.strip().splitlines()) == 1
        extra = make_image(data / "cat" / "new.png", 50)
        code, _, err = cli("evaluate", run, "--split", "train")
        assert code == 2 and "changed since training" in err
        extra.unlink()
    finally:
        victim.write_bytes(original)
    code, _, err = cli("evaluate", run)
    assert code == 0, err


@pytest.mark.parametrize(
    "content, message",
    [("[1, 2]", "expected a JSON object"), ('{"model": "smallcnn"}', "expected the field 'num_classes'"),
     ('{"model": "x", "num_classes": 3, "classes": ["a"], "input": {"channels": 1, "height": 8, "width": 8},'
      ' "preprocessing": {}}', "expected 3 class names")],
)  # fmt: skip
def test_damaged_run_card_gets_one_line(tmp_path, cli, content, message):
    (tmp_path / "model.json").write_text(content)
    with pytest.raises(CnnkitError, match=message):
        read_card(tmp_path)
    code, _, err = cli("predict", tmp_path, "x.png")
    assert code == 2 and message in err and "Traceback" not in err


def _fresh(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_readme_python_example_runs_in_a_fresh_process(digits_run, tmp_path):
    from .conftest import make_image

    image = make_image(tmp_path / "x.png", 30, size=(8, 8))
    res = _fresh(
        f"import cnnkit\nrun = cnnkit.load({str(digits_run)!r})\nprint(run.predict([{str(image)!r}])[0].label)"
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() in [str(i) for i in range(10)]


ENTRY_POINTS = ["cnnkit.tasks", "cnnkit.engine", "cnnkit.evaluate", "cnnkit.predict", "cnnkit.transfer",
                "cnnkit.explain", "cnnkit.cli", "cnnkit.deploy", "cnnkit.detection", "cnnkit.segmentation",
                "cnnkit.verification"]  # fmt: skip


def test_each_public_entry_point_imports_first():
    """Each entry point imported first, with no cnnkit module loaded before it (an import cycle shows only then).
    One fresh process: cnnkit's modules are dropped between imports; torch and the rest stay loaded."""
    code = (
        "import importlib, sys\n"
        f"for name in {ENTRY_POINTS!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'cnnkit' or m.startswith('cnnkit.')]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
        "    print(name)\n"
    )
    res = _fresh(code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ENTRY_POINTS


def test_version_loads_no_torch():
    res = _fresh(
        "import sys\nfrom cnnkit.cli import main\ntry:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)"
    )
    assert res.returncode == 0 and res.stdout.strip().splitlines()[-1] == "False", res.stderr


def test_predict_imports_no_scoring_library(digits_run, tmp_path):
    """`cnnkit predict` loads neither scikit-learn nor torchmetrics (together ~3 s of its 9 s on a 2-core CPU): they
    are imported where a metric is computed."""
    from .conftest import make_image

    image = make_image(tmp_path / "x.png", 30, size=(8, 8))
    res = _fresh(
        f"import sys\nfrom cnnkit.cli import main\nmain(['predict', {str(digits_run)!r}, {str(image)!r}])\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'torchmetrics', 'scipy'}))"
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "[]"
