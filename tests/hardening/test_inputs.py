"""Hardening: every bad input a user can give gets one line and exit status 2, with the run directory and the
user's files unchanged and memory bounded by the work (issue 16's cases, by category)."""

from __future__ import annotations

import csv
import errno
import json
import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnkit.data.images import BadImageError, load_image
from cnnkit.engine.rundir import LOCK, claim
from cnnkit.errors import CnnkitError
from cnnkit.io import atomic_write, read_yaml

from ..conftest import make_folder, make_image

QUIET = ("--quiet",)


def one_line_error(code: int, err: str) -> None:
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("cnnkit: error:") and "Traceback" not in err, err


# ---- runs mixed or data overwritten -------------------------------------------------------------------------------
def test_a_second_training_into_a_claimed_directory_is_refused(cli, tmp_path):
    out = tmp_path / "run"
    with claim(out):  # another training holds it
        code, _, err = cli("train", "--data", "digits", "--epochs", "1", "--out", out, *QUIET)
        one_line_error(code, err)
        assert "another training" in err and sorted(p.name for p in out.iterdir()) == [LOCK]
    code, _, err = cli("train", "--data", "digits", "--epochs", "1", "--out", out, *QUIET)
    assert code == 0, err


def test_two_processes_into_one_out_exactly_one_proceeds(tmp_path):
    script = "import sys\nfrom cnnkit.cli import main\nsys.exit(main(sys.argv[1:]))"
    args = [sys.executable, "-c", script, "train", "--data", "digits", "--epochs", "2", "--out", str(tmp_path / "r"),
            "--quiet"]  # fmt: skip
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in results) == [0, 2], results
    assert any("another training" in err or "found a run in" in err for _, err in results)
    card = json.loads((tmp_path / "r" / "model.json").read_text())
    assert card["model"] == "smallcnn" and len((tmp_path / "r" / "history.csv").read_text().splitlines()) == 3


def test_outputs_never_replace_inputs(cli, digits_run, tmp_path):
    image = make_image(tmp_path / "photo.png", 90, size=(16, 16))
    before = image.read_bytes()
    code, _, err = cli("convolve", image, "--kernel", "sharpen", "--out", image)
    one_line_error(code, err)
    assert image.read_bytes() == before
    card = (digits_run / "model.json").read_bytes()
    code, _, err = cli("evaluate", digits_run, "--json", digits_run / "model.json")
    one_line_error(code, err)
    assert (digits_run / "model.json").read_bytes() == card
    code, _, err = cli("convolve", image, "--kernel", "sharpen", "--out", tmp_path)
    one_line_error(code, err)


def test_training_into_the_data_or_onto_a_file_is_refused(cli, tmp_path):
    data = make_folder(tmp_path / "pets", per_class=4)
    code, _, err = cli("train", "--data", data, "--out", data / "run", "--image-size", "8", *QUIET)
    one_line_error(code, err)
    assert not (data / "run").exists()
    (tmp_path / "a_file").write_text("x")
    code, _, err = cli("train", "--data", "digits", "--out", tmp_path / "a_file", *QUIET)
    one_line_error(code, err)
    assert (tmp_path / "a_file").read_text() == "x"


def test_resume_of_a_finished_run_is_refused_and_epochs_extend_it(cli, tmp_path):
    out = tmp_path / "r"
    assert cli("train", "--data", "digits", "--epochs", "1", "--out", out, *QUIET)[0] == 0
    card = (out / "model.json").read_text()
    code, _, err = cli("train", "--resume", out, *QUIET)
    one_line_error(code, err)
    assert "finished after 1 epochs" in err and (out / "model.json").read_text() == card
    code, _, err = cli("train", "--resume", out, "--data", "fashion-mnist", *QUIET)
    one_line_error(code, err)
    assert "--data" in err
    code, _, err = cli("train", "--resume", out, "--epochs", "2", *QUIET)
    assert code == 0, err
    assert len(list(csv.DictReader((out / "history.csv").open()))) == 2
    assert (out / "model.json").read_text() == card  # the card (creation date, split) is the original's


# ---- config values ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "setting",
    ["optim.lr=-1", "optim.momentum=-1", "train.label_smoothing=2", "data.image_size=-8", "model.dropout=1.5",
     "train.seed=-1", f"train.seed={2**70}", "optim.lr={", "optim.clip_grad_norm=-1", "optim.weight_decay=-0.1",
     "data.val_fraction=-0.1", "data.mixup=-1", "optim.gamma=-1", "data.num_workers=-1", "train.epochs=0",
     "train.early_stop_patience=-1", "optim.lr=.nan", "train.batch_size=0"],
)  # fmt: skip
def test_out_of_range_values_are_refused_before_anything_runs(cli, tmp_path, setting):
    code, _, err = cli("train", "--data", "digits", "--set", setting, "--out", tmp_path / "r", *QUIET)
    one_line_error(code, err)
    assert not (tmp_path / "r").exists()


def test_seed_flag_is_checked_too(cli, tmp_path):
    code, _, err = cli("train", "--data", "digits", "--seed", "-1", "--out", tmp_path / "r", *QUIET)
    one_line_error(code, err)


def test_one_class_is_refused_and_the_directory_stays_usable(cli, tmp_path):
    make_folder(tmp_path / "one", classes=("cat",), per_class=6)
    out = tmp_path / "r"
    code, _, err = cli("train", "--data", tmp_path / "one", "--image-size", "8", "--out", out, *QUIET)
    one_line_error(code, err)
    assert "at least 2 classes" in err
    make_folder(tmp_path / "two", per_class=6)
    code, _, err = cli("train", "--data", tmp_path / "two", "--image-size", "8", "--epochs", "1", "--out", out, *QUIET)
    assert code == 0, err


def test_a_class_folder_name_that_is_not_utf8_trains_evaluates_and_reports(cli, tmp_path):
    root = tmp_path / "data"
    make_folder(root, classes=("ok",), per_class=6)
    bad = os.path.join(os.fsencode(root), b"caf\xe9")  # Latin-1 "café": not valid UTF-8
    os.mkdir(bad)
    for i in range(6):
        make_image(Path(os.fsdecode(os.path.join(bad, f"{i}.png".encode()))), 200 + i)
    out = tmp_path / "r"
    code, _, err = cli("train", "--data", root, "--image-size", "8", "--epochs", "1", "--out", out, *QUIET)
    assert code == 0, err
    code, _, err = cli("evaluate", out, "--predictions", tmp_path / "p.csv", "--gallery", tmp_path / "g.png")
    assert code == 0, err
    text = (tmp_path / "p.csv").read_text(errors="surrogateescape")  # the paths keep their own bytes
    assert "caf\ufffd" in text and (out / "report.html").is_file()


# ---- damaged run directories --------------------------------------------------------------------------------------
@pytest.fixture
def run_copy(digits_run, tmp_path) -> Path:
    import shutil

    return Path(shutil.copytree(digits_run, tmp_path / "run"))


@pytest.mark.parametrize("content", [{}, [1, 2], {"model": {}}])
def test_a_training_state_with_the_wrong_content_cannot_be_resumed(cli, run_copy, content):
    torch.save(content, run_copy / "train_state.pt")
    code, _, err = cli("train", "--resume", run_copy, "--epochs", "5", *QUIET)
    one_line_error(code, err)
    assert "train_state.pt" in err


def test_a_training_state_of_another_model_cannot_be_resumed(cli, run_copy):
    state = torch.load(run_copy / "train_state.pt", weights_only=True)
    state["model"] = {"fc.weight": torch.zeros(3, 3)}
    torch.save(state, run_copy / "train_state.pt")
    code, _, err = cli("train", "--resume", run_copy, "--epochs", "5", *QUIET)
    one_line_error(code, err)
    assert "another model" in err


def test_nan_weights_are_named_not_scored(cli, run_copy, tmp_path):
    from safetensors.torch import load_file, save_file

    sd = load_file(run_copy / "model.safetensors")
    sd["fc.weight"] = torch.full_like(sd["fc.weight"], float("nan"))
    save_file(sd, run_copy / "model.safetensors")
    code, _, err = cli("evaluate", run_copy)
    one_line_error(code, err)
    code, _, err = cli("predict", run_copy, make_image(tmp_path / "x.png", 3, size=(8, 8)))
    one_line_error(code, err)
    assert "NaN" in err


def test_a_temporary_file_left_by_a_killed_save_is_cleaned_on_resume(cli, run_copy):
    stale = run_copy / ".train_state.pt.abc123.tmp"
    stale.write_bytes(b"")
    assert cli("train", "--resume", run_copy, "--epochs", "3", *QUIET)[0] == 0
    assert not stale.exists()


def test_a_full_disk_keeps_the_previous_file_and_says_so(tmp_path):
    target = tmp_path / "train_state.pt"
    target.write_bytes(b"good")

    def full(tmp: str) -> None:
        Path(tmp).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(CnnkitError, match="disk.*full; the previous file is intact"):
        atomic_write(target, full)
    assert target.read_bytes() == b"good" and [p.name for p in tmp_path.iterdir()] == ["train_state.pt"]


# ---- configs and specs --------------------------------------------------------------------------------------------
BOMB = textwrap.dedent("""\
    a: &a ["x","x","x","x","x","x","x","x","x","x"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]
    train: {epochs: *g}
""")


def test_a_billion_laughs_config_is_refused_in_bounded_memory(cli, tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    tracemalloc.start()
    try:
        code, _, err = cli("train", "--config", path, "--out", tmp_path / "r", *QUIET)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    one_line_error(code, err)
    assert len(err) < 400 and peak < 50e6, (len(err), peak)


@pytest.mark.parametrize(
    "content", [b"\x89PNG\r\n\x1a\n\x00\x00binary", "train: {epochs: 3}\n".encode("utf-16"), b"[" * 5000 + b"]" * 5000]
)
def test_binary_foreign_or_deeply_nested_configs_get_one_line(cli, tmp_path, content):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    code, _, err = cli("train", "--config", path, "--out", tmp_path / "r", *QUIET)
    one_line_error(code, err)


def test_read_yaml_refuses_huge_files(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("x: " + "a" * (2 << 20))
    with pytest.raises(CnnkitError, match="at most 1 MiB"):
        read_yaml(path)


# ---- arithmetic before allocation ---------------------------------------------------------------------------------
def test_sizes_that_would_need_gigabytes_are_refused_before_allocating(cli, tmp_path):
    code, _, err = cli("explain", "resnet18", "--input", "1000000000x224x224")
    one_line_error(code, err)
    image = make_image(tmp_path / "x.png", 50, size=(16, 16))
    code, _, err = cli("convolve", image, "--kernel", "sharpen", "--padding", "100000", "--out", tmp_path / "o.png")
    one_line_error(code, err)


def peak_rss_mb(args: list[str]) -> tuple[int, float, str]:
    """Run ``cnnkit ARGS`` in a fresh process -> (exit status, its peak resident memory in MB, stderr).

    The peak is the child's own ``VmHWM``: ``getrusage``'s ``ru_maxrss`` survives ``exec`` on Linux, so it would
    report the (large) pytest process that started the child rather than the child itself.
    """
    code = (
        f"import re, sys\nfrom cnnkit.cli import main\nrc = main({args!r})\n"
        "hwm = re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1)\n"
        "print(int(hwm) / 1024, file=sys.stderr)\nsys.exit(rc)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    *lines, peak = res.stderr.strip().splitlines()
    return res.returncode, float(peak), "\n".join(lines)


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory) -> Path:
    """An 88-megapixel 16-bit PNG of a few hundred bytes (zeros compress)."""
    path = tmp_path_factory.mktemp("big") / "huge.png"
    Image.new("I;16", (9400, 9400)).save(path)
    return path


def test_huge_images_are_refused_from_the_header_in_bounded_memory(huge_png, digits_run, tmp_path):
    code, peak, err = peak_rss_mb(["convolve", str(huge_png), "--kernel", "sharpen", "--out", str(tmp_path / "o.png")])
    one_line_error(code, err)
    assert "megapixels" in err and peak < 1500, peak  # was 8.4 GB
    code, peak, err = peak_rss_mb(["predict", str(digits_run), str(huge_png)])
    one_line_error(code, err)
    assert "--skip-bad" not in err and peak < 1500, peak  # was 2.5 GB


# ---- images that were read wrong ----------------------------------------------------------------------------------
def test_exif_orientation_is_applied(tmp_path):
    a = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 tall as stored
    a[:, :10] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display", as phones write it
    Image.fromarray(a).save(tmp_path / "phone.jpg", exif=exif.tobytes())
    t = load_image(tmp_path / "phone.jpg", 3, None)
    assert t.shape == (3, 40, 20)  # displayed upright: 20 wide, 40 tall
    assert t[:, :10].float().mean() > 200 and t[:, -10:].float().mean() < 50  # the white band is now on top


def test_a_float_tiff_with_nan_pixels_is_refused(tmp_path):
    a = np.ones((8, 8), np.float32)
    a[2, 3] = np.nan
    Image.fromarray(a, "F").save(tmp_path / "nan.tif")
    with pytest.raises(BadImageError, match="NaN"):
        load_image(tmp_path / "nan.tif", 1, None)


def test_messages_say_what_happened(cli, digits_run, tmp_path):
    code, _, err = cli("predict", digits_run, tmp_path / "missing.png")
    one_line_error(code, err)
    assert "no such file" in err and "--skip-bad" not in err


# ---- interrupts ---------------------------------------------------------------------------------------------------
def test_history_records_each_epochs_first_rate_after_a_mid_epoch_resume(tmp_path, monkeypatch):
    from cnnkit.config import build_config
    from cnnkit.engine import Trainer
    from cnnkit.tasks import resume, train

    sets = ["data.name=digits", "train.epochs=2", "train.save_every_steps=3", "train.batch_size=256"]
    quiet = {"log": lambda *_: None, "progress": False}
    train(build_config(sets=[*sets, f"train.out={tmp_path / 'full'}"]), **quiet)
    step, calls = Trainer.step, {"n": 0}

    def interrupted(self, x, y):
        calls["n"] += 1
        if calls["n"] == 10:  # epoch 2, after its checkpoint at step 3
            raise KeyboardInterrupt
        return step(self, x, y)

    monkeypatch.setattr(Trainer, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(build_config(sets=[*sets, f"train.out={tmp_path / 'cut'}"]), **quiet)
    monkeypatch.setattr(Trainer, "step", step)
    resume(tmp_path / "cut", **quiet)
    lrs = [[r["lr"] for r in csv.DictReader((tmp_path / d / "history.csv").open())] for d in ("full", "cut")]
    assert lrs[0] == lrs[1]


def test_sigterm_stops_a_training_with_a_message(tmp_path):
    import signal
    import time

    script = "import sys\nfrom cnnkit.cli import main\nsys.exit(main(sys.argv[1:]))"
    out = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-c", script, "train", "--data", "digits", "--epochs", "200", "--out",
                             str(out), "--quiet"], stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while not (out / "train_state.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    assert "terminated (SIGTERM); the last saved checkpoint is kept" in proc.stderr.read()
    assert torch.load(out / "train_state.pt", weights_only=True)["epoch"] >= 1


def test_visualize_refuses_a_layer_without_a_map_and_a_file_as_out(cli, digits_run, tmp_path):
    image = make_image(tmp_path / "x.png", 40, size=(8, 8))
    code, _, err = cli("visualize", digits_run, image, "--out", tmp_path / "v", "--layers", "fc")
    one_line_error(code, err)
    assert "feature maps" in err
    (tmp_path / "a_file").write_text("x")
    code, _, err = cli("visualize", digits_run, image, "--out", tmp_path / "a_file")
    one_line_error(code, err)
    assert (tmp_path / "a_file").read_text() == "x"
