"""The classification report's "What the layers learned" section (cnnkit.explain.units_report)."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.explain.units import overview_layers, run_images
from cnnkit.explain.units_report import LIMIT, TITLE, draw_units

from .conftest import meta_model

LAYERS = ("stem.0", "stage2.1")  # smallcnn's first conv block and its last


def links(md: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)


def section(md: str) -> str:
    """The text of the section, from its heading to the next one."""
    return md.split(f"## {TITLE}\n", 1)[1].split("\n## ", 1)[0]


def test_the_report_after_training_shows_an_early_and_the_last_conv_layer(digits_run):
    """`cnnkit train` wrote the report: two PNGs of the expected layers, one sentence each, links that resolve."""
    md, html = (digits_run / "report.md").read_text(), (digits_run / "report.html").read_text()
    assert f"## {TITLE}" in md and f"<h2>{TITLE}</h2>" in html
    n = len(run_images(digits_run, "val"))
    assert n <= LIMIT
    text = section(md)
    assert f"First conv layer stem.0: receptive field 3×3 pixels; all {n} validation images searched." in text
    assert f"Last conv layer stage2.1: receptive field 32×32 pixels, wider than the 8×8 image; all {n} " in text
    units = [link for link in links(md) if "/units_" in link]
    assert units == [f"report_files/units_{name}.png" for name in LAYERS]
    assert all(f'<img src="{link}"' in html for link in units)
    for link in links(md):
        assert (digits_run / link).is_file(), f"report.md links {link}, which is not there"
    for link in units:
        with Image.open(digits_run / link) as im:
            assert im.format == "PNG" and im.width > 500 and im.height > 300
            im.verify()
    assert md.index(f"## {TITLE}") < md.index("## Configuration")


def test_no_units_leaves_the_section_out(cli, digits_run, tmp_path):
    run = Path(shutil.copytree(digits_run, tmp_path / "run"))
    code, _, _ = cli("report", run, "--no-units")
    assert code == 0 and TITLE not in (run / "report.md").read_text()


def test_a_run_without_validation_images_gets_its_report_with_the_reason(cli, tmp_path):
    """Trained with no validation split and train.report_units=false: the report after training has no section;
    `cnnkit report` then says in one line why there are no figures, and writes the rest of the report."""
    run = tmp_path / "run"
    code, _, _ = cli("train", "--data", "digits", "--epochs", "1", "--out", run, "--quiet", "--seed", "1",
                     "--set", "data.val_fraction=0", "--set", "train.report_units=false")  # fmt: skip
    assert code == 0 and "## Configuration" in (run / "report.md").read_text()
    assert TITLE not in (run / "report.md").read_text()
    code, out, _ = cli("report", run)
    assert code == 0 and "report written" in out
    md, html = (run / "report.md").read_text(), (run / "report.html").read_text()
    reason = section(md).strip()
    assert reason == "No figures: expected images in the val split of digits, found none."
    assert f"<h2>{TITLE}</h2>\n<p>{reason}</p>" in html
    assert not list((run / "report_files").glob("units_*.png"))
    assert all((run / link).is_file() for link in links(md)) and "## Top losses" in md


def test_a_split_larger_than_the_limit_is_sampled_evenly(digits_run, tmp_path):
    """Every ceil(N / limit)-th image: at most ``limit``, spread over the whole split."""
    n = len(run_images(digits_run, "val"))
    figures = draw_units(digits_run, tmp_path, limit=n // 3, channels=2, k=4)
    searched = len(range(0, n, math.ceil(n / (n // 3))))
    assert searched <= n // 3
    assert [(f.layer.name, f.role, f.searched, f.total) for f in figures] == [
        ("stem.0", "first", searched, n),
        ("stage2.1", "last", searched, n),
    ]
    assert {p.name for p in tmp_path.iterdir()} == {f"units_{name}.png" for name in LAYERS}


def test_overview_layers_are_the_first_and_the_last_conv_blocks():
    assert [layer.name for layer in overview_layers(meta_model("smallcnn"))] == list(LAYERS)
    assert [layer.name for layer in overview_layers(meta_model("lenet5.yaml"))] == ["features.c1", "features.c3"]
    resnet = overview_layers(meta_model("resnet18"))  # a residual block holds two convs: the conv itself
    assert [(layer.name, layer.rf) for layer in resnet] == [("conv1", (7, 7)), ("layer4.1.conv2", (435, 435))]
    one = nn.Sequential(nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU()), nn.Flatten())
    assert [layer.name for layer in overview_layers(one, (1, 8, 8))] == ["0"]


def test_a_model_without_spatial_maps_has_no_overview_layers():
    with pytest.raises(CnnkitError, match=r"expected a layer with a spatial map"):
        overview_layers(nn.Sequential(nn.Flatten(), nn.Linear(64, 3)), (1, 8, 8))
