"""A user's scan or photo brought to the look of a grey dataset of centred objects (cnnkit.data.content)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_digits
from torch import Tensor

from cnnkit.data.content import describe_content, fit_content

DARK = {"background": "dark", "level": 0, "fill": 1.0}  # as digits and Fashion-MNIST: objects on black


def _sheet(h: int, w: int, paper: int = 230) -> Tensor:
    return torch.full((1, h, w), paper, dtype=torch.uint8)


def test_ink_on_paper_is_negated_cut_to_the_object_and_centred() -> None:
    page = _sheet(40, 30)
    page[0, 5:15, 20:26] = 10  # a 10 × 6 stroke of ink, off-centre
    out = fit_content(page, DARK, (8, 8))
    assert out.shape == (1, 10, 10)  # the object's longer side fills the square
    # negated: paper 25, ink 245; stretched so the paper is black and white stays: ink (245 − 25) · 255 / 230 = 244
    want = torch.zeros((1, 10, 10), dtype=torch.uint8)
    want[0, :, 2:8] = 244  # bright on black, in the middle
    assert torch.equal(out, want)
    half = fit_content(page, {"background": "dark", "level": 0, "fill": 0.5}, (8, 8))
    assert half.shape == (1, 20, 20) and torch.equal(half[0, 5:15, 7:13], want[0, :, 2:8])


def test_an_image_already_like_the_data_is_left_as_it_is() -> None:
    own = torch.zeros(1, 8, 8, dtype=torch.uint8)
    own[0, 1:7, 3:5] = 200  # bright on dark at the training size: nothing to do
    assert fit_content(own, DARK, (8, 8)) is own
    light = _sheet(8, 8)
    light[0, 2:6, 2:6] = 0
    want = torch.zeros(1, 8, 8, dtype=torch.uint8)
    want[0, 2:6, 2:6] = 255  # at the training size negated (25 and 255) and stretched (0 and 255), not cut
    assert torch.equal(fit_content(light, DARK, (8, 8)), want)
    assert torch.equal(fit_content(light, {"background": "light", "level": 230, "fill": 1.0}, (8, 8)), light)
    grey = own + 20  # the dataset's size and side: its grey background is not touched either
    assert fit_content(grey, DARK, (8, 8)) is grey
    page = _sheet(12, 12)
    page[0, 4:8, 4:8] = 0
    brighter = fit_content(page, {"background": "light", "level": 250, "fill": 0.5}, (8, 8))
    assert brighter.shape == (1, 8, 8) and brighter[0, 0, 0] == 250  # the paper to the data's white
    assert (brighter[0, 2:6, 2:6] == 0).all() and (brighter[0, :2] == 250).all()  # black stays, centred


def test_a_cluttered_frame_is_not_touched() -> None:
    noise = torch.randint(0, 256, (1, 50, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert fit_content(noise, DARK, (8, 8)) is noise  # no plain background to read
    blank = _sheet(30, 30)
    assert torch.equal(fit_content(blank, DARK, (8, 8)), torch.zeros(1, 30, 30, dtype=torch.uint8))  # not cut


def test_the_look_of_the_training_images() -> None:
    digits = torch.from_numpy((load_digits().images[:400] * 16).clip(0, 255).astype(np.uint8))[:, None]
    look = describe_content(digits)
    assert look is not None and look["background"] == "dark" and look["level"] == 0 and look["fill"] >= 0.8
    assert describe_content(255 - digits)["background"] == "light" and describe_content(255 - digits)["level"] == 255
    assert describe_content(torch.cat([digits[:200], 255 - digits[:200]])) is None  # no side agreed on
    assert describe_content(digits.expand(-1, 3, -1, -1)) is None  # colour: nothing recorded


def _scan(a: np.ndarray, i: int) -> np.ndarray:
    """An 8×8 digit as a scanned page would show it: ink (dark) on paper, 12× larger, somewhere on a bigger sheet."""
    big = np.asarray(Image.fromarray(255 - a).resize((96, 96), Image.Resampling.BILINEAR))
    page = np.full((200, 160), 235, np.uint8)
    y, x = 20 + (i * 7) % 60, 10 + (i * 11) % 50
    page[y : y + 96, x : x + 96] = np.minimum(big, 235)
    return page


def test_a_grey_run_brings_scans_to_the_look_of_its_data(digits_run: Path) -> None:
    import cnnkit

    card = json.loads((digits_run / "model.json").read_text())
    assert card["preprocessing"]["content"]["background"] == "dark"
    pred = cnnkit.load(digits_run)
    digits = (load_digits().images[-100:] * 16).clip(0, 255).astype(np.uint8)
    scans = [_scan(a, i) for i, a in enumerate(digits)]
    original = torch.from_numpy(digits).float()[:, None]
    fitted = torch.stack([pred.to_tensor(s) for s in scans]).float()
    pred.content = None
    as_they_are = torch.stack([pred.to_tensor(s) for s in scans]).float()
    # mean absolute difference from the dataset's own images, grey levels (the digits average 78)
    assert (fitted - original).abs().mean() < 45 and (as_they_are - original).abs().mean() > 120


def test_evaluate_on_a_folder_of_scans_brings_them_to_the_runs_look(digits_run: Path, tmp_path: Path) -> None:
    from cnnkit.evaluate.runs import load_eval_set, load_member

    d = load_digits()
    digits, labels = (d.images[-100:] * 16).clip(0, 255).astype(np.uint8), d.target[-100:]
    for i, (a, y) in enumerate(zip(digits, labels)):
        path = tmp_path / "scans" / str(y) / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_scan(a, i)).convert("RGB").save(path)  # a phone's photo is RGB, even of ink on paper
    member = load_member(digits_run)
    got = load_eval_set([member], str(tmp_path / "scans"), "test", None)
    images = got.datasets[(8, 8)].images.float()
    assert images.shape[1:] == (1, 8, 8) and len(images) == len(got.ids) > 10
    original = torch.stack([torch.from_numpy(digits[int(Path(p).stem)]) for p in got.ids]).float()[:, None]
    assert (images - original).abs().mean() < 45  # as the predictor brings one scan (the test above)
