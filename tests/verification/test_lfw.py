"""LFW's standard evaluation: ``cnnkit verify pairs RUN --pairs pairs.txt --root DIR`` on a tiny tree in LFW's
layout (digits as identities, JPEG), and the k-fold protocol on distances built by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnkit.errors import CnnkitError
from cnnkit.verification.lfw import fold_accuracies, index_pairs, lfw_protocol, one_fold
from cnnkit.verification.pairs import lfw_pairs

# Three folds of 2 matched (T) and 2 mismatched (F) pairs, distances chosen so that no threshold is a tie:
#   fold 0: .2 T  .6 T  .7 F  .9 F     (alone it would be perfect at .65; the others say .35)
#   fold 1: .1 T  .25 T .4 F  .5 F
#   fold 2: .15 T .3 T  .45 F .55 F
DIST = torch.tensor([0.2, 0.6, 0.7, 0.9, 0.1, 0.25, 0.4, 0.5, 0.15, 0.3, 0.45, 0.55], dtype=torch.float64)
SAME = torch.tensor([True, True, False, False] * 3)
FOLD = torch.tensor([0] * 4 + [1] * 4 + [2] * 4)


def test_each_fold_is_scored_at_the_threshold_chosen_on_the_other_folds() -> None:
    # held out 0: folds 1+2 sorted .1T .15T .25T .3T | .4F .45F .5F .55F separate perfectly: (.3 + .4) / 2 = .35;
    #   fold 0 at .35: .2T same ✓, .6T different ✗, .7F ✓, .9F ✓ -> 3/4 (at its own optimum .65 it would be 4/4)
    # held out 1: folds 0+2 .15T .2T .3T | .45F .55F .6T .7F .9F: 3 + 4 = 7 right at (.3 + .45) / 2 = .375, the
    #   only 7 (after .6T: 4 + 2 = 6); fold 1 at .375: .1T .25T same, .4F .5F different -> 4/4
    # held out 2: folds 0+1 .1T .2T .25T | .4F .5F .6T .7F .9F: 7 right at (.25 + .4) / 2 = .325 only;
    #   fold 2 at .325: .15T .3T same, .45F .55F different -> 4/4
    folds, thresholds, accuracies = fold_accuracies(DIST, SAME, FOLD)
    assert folds == [0, 1, 2]
    assert thresholds == pytest.approx([0.35, 0.375, 0.325])
    assert accuracies == pytest.approx([0.75, 1.0, 1.0])


def test_protocol_mean_std_and_all_pair_figures_by_hand() -> None:
    m = lfw_protocol(DIST, SAME, FOLD)
    assert m["n_pairs"] == 12 and m["n_matched"] == 6 and m["folds"] == 3
    assert m["accuracy_mean"] == pytest.approx(np.mean([0.75, 1.0, 1.0]))  # 0.9167
    assert m["accuracy_std"] == pytest.approx(np.std([0.75, 1.0, 1.0]))  # 0.1179
    # all 12 pairs: of the 6 × 6 (matched, mismatched) orderings only .6T against .4F .45F .5F .55F are wrong
    assert m["auc"] == pytest.approx(32 / 36)
    # 5 of the 6 matched pairs (up to .3) come before any mismatched one: TAR 5/6 at FAR 0
    assert m["tar_at_far_1e-3"] == pytest.approx(5 / 6) and m["tar_at_far_1e-2"] == pytest.approx(5 / 6)
    with pytest.raises(CnnkitError, match="at least 2 folds .* found 1"):
        lfw_protocol(DIST, SAME, torch.zeros(12, dtype=torch.long))


def test_one_fold_is_scored_at_a_threshold_chosen_elsewhere_by_hand() -> None:
    m = one_fold(DIST, SAME, 0.35, "the run's validation pairs")
    # matched up to .35: .2 .1 .25 .15 .3 (not .6); mismatched above it: all six -> 11 of 12
    assert m["folds"] == 1 and m["accuracy_mean"] == pytest.approx(11 / 12) and m["accuracy_std"] == 0
    assert m["fold_thresholds"] == [0.35] and m["auc"] == pytest.approx(32 / 36) and m["n_pairs"] == 12


def test_index_pairs_lists_each_image_once() -> None:
    images, pairs = index_pairs([("a1", "a2", True, 0), ("a1", "b1", False, 0), ("b1", "b2", True, 1)])
    assert images == ["a1", "a2", "b1", "b2"]
    assert pairs.a.tolist() == [0, 0, 2] and pairs.b.tolist() == [1, 2, 3]
    assert pairs.same.tolist() == [True, False, True] and pairs.fold.tolist() == [0, 0, 1]


# ---- a tiny tree in LFW's layout and the command -------------------------------------------------------------
NAMES = [f"Digit_{d}" for d in (3, 5, 7, 8, 9)]  # 5 identities × 4 images: root/Digit_7/Digit_7_0001.jpg …
FOLDS, PER_FOLD = 3, 3


def pair_lines() -> list[str]:
    """3 folds × (3 matched 'name i j' + 3 mismatched 'name1 i name2 j'), tab-separated like LFW's."""
    lines = [f"{FOLDS}\t{PER_FOLD}"]
    for f in range(FOLDS):
        for j in range(PER_FOLD):
            name = NAMES[(f + j) % 5]
            lines.append(f"{name}\t{1 + j % 2}\t{3 + (f + j) % 2}")
        for j in range(PER_FOLD):
            lines.append(f"{NAMES[(f + j) % 5]}\t{1 + f}\t{NAMES[(f + j + 2) % 5]}\t{4 - j}")
    return lines


@pytest.fixture(scope="module")
def lfw_root(tmp_path_factory) -> Path:
    from sklearn.datasets import load_digits

    d = load_digits()
    root = tmp_path_factory.mktemp("lfw")
    for name in NAMES:
        (root / name).mkdir()
        for k, i in enumerate(np.flatnonzero(d.target == int(name[-1]))[:4], start=1):
            pixels = (d.images[i] * 16).clip(0, 255).astype(np.uint8)
            image = Image.fromarray(pixels).resize((32, 32), Image.Resampling.NEAREST).convert("RGB")
            image.save(root / name / f"{name}_{k:04d}.jpg", quality=95)
    return root


def write_pairs(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_pairs_saved_on_windows_read_the_same(lfw_root: Path, tmp_path: Path) -> None:
    """CRLF line ends, a UTF-8 byte order mark, spaces for tabs and a trailing blank line change nothing."""
    plain, _ = lfw_pairs(write_pairs(tmp_path / "pairs.txt", pair_lines()), lfw_root)
    windows = tmp_path / "pairs_windows.txt"
    text = "\r\n".join([*(line.replace("\t", " ") for line in pair_lines()), "", ""])
    windows.write_bytes(b"\xef\xbb\xbf" + text.encode())
    found, skipped = lfw_pairs(windows, lfw_root)
    assert found == plain and skipped == []
    assert [fold for *_, fold in found] == [k // (2 * PER_FOLD) for k in range(2 * FOLDS * PER_FOLD)]
    assert [same for _, _, same, _ in found] == ([True] * PER_FOLD + [False] * PER_FOLD) * FOLDS


def test_the_csv_copy_of_pairs_txt_reads_the_same(lfw_root: Path, tmp_path: Path) -> None:
    """pairs.csv as some LFW downloads carry it: a header, no fold line, matched rows with an empty fourth field;
    its folds follow from the order (a run of matched pairs, then the mismatched ones)."""
    plain, _ = lfw_pairs(write_pairs(tmp_path / "pairs.txt", pair_lines()), lfw_root)
    rows = [line.split("\t") for line in pair_lines()[1:]]
    csv_lines = ["name,imagenum1,imagenum2,", *(",".join(r + [""] * (4 - len(r))) for r in rows)]
    found, skipped = lfw_pairs(write_pairs(tmp_path / "pairs.csv", csv_lines), lfw_root)
    assert found == plain and skipped == []
    assert [fold for *_, fold in found] == [k // (2 * PER_FOLD) for k in range(2 * FOLDS * PER_FOLD)]
    bad = write_pairs(tmp_path / "bad.csv", [*csv_lines[:3], "Digit_3,one,2,", *csv_lines[4:]])
    with pytest.raises(CnnkitError, match=r"'name i j' or 'name1 i name2 j' on line 4 of .*bad.csv"):
        lfw_pairs(bad, lfw_root)


def test_pairs_command_prints_the_block(run: Path, lfw_root: Path, tmp_path: Path, cli) -> None:
    pairs = write_pairs(tmp_path / "pairs.txt", pair_lines())
    code, out, err = cli("verify", "pairs", run, "--pairs", pairs, "--root", lfw_root)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 3 and lines[0] == f"{pairs}: 18 pairs (9 matched) in 3 folds, 0 skipped"
    assert lines[1].startswith("  3-fold accuracy ") and " ± " in lines[1]
    assert "ROC AUC" in lines[2] and "EER" in lines[2] and "TAR@FAR=1e-3" in lines[2] and "TAR@FAR=1e-2" in lines[2]
    code, out, _ = cli("verify", "pairs", run, "--pairs", pairs, "--root", lfw_root, "--json")
    m = json.loads(out)
    assert code == 0 and m["n_pairs"] == 18 and m["folds"] == 3 and m["n_skipped"] == 0 and m["skipped"] == []
    assert m["n_images"] == len({(p[0], p[1]) for p in _images(pair_lines())})
    assert m["accuracy_mean"] == pytest.approx(np.mean(m["fold_accuracies"]))
    assert m["accuracy_std"] == pytest.approx(np.std(m["fold_accuracies"]))
    assert 0 <= m["eer"] <= 1 and 0 <= m["auc"] <= 1 and len(m["fold_thresholds"]) == 3


def test_a_view_1_file_is_one_fold_at_the_runs_threshold(run: Path, lfw_root: Path, tmp_path: Path, cli) -> None:
    """pairsDevTest.txt's layout: the first line is the number of matched (and of mismatched) pairs."""
    import cnnkit

    lines = pair_lines()[1 : 1 + 2 * PER_FOLD]  # fold 0 of the View 2 file: 3 matched, 3 mismatched
    pairs = write_pairs(tmp_path / "pairsDevTest.txt", [str(PER_FOLD), *lines])
    code, out, err = cli("verify", "pairs", run, "--pairs", pairs, "--root", lfw_root, "--json")
    assert code == 0, err
    m = json.loads(out)
    threshold = json.loads((run / "verify.json").read_text())["threshold"]
    assert m["folds"] == 1 and m["n_pairs"] == 6 and m["fold_thresholds"] == [threshold]
    pred, same, right = cnnkit.load(run), [len(line.split("\t")) == 3 for line in lines], []
    for (a, b), s in zip(zip(*[iter(_images([str(PER_FOLD), *lines]))] * 2), same):
        e = pred.embed([lfw_root / n / f"{n}_{int(i):04d}.jpg" for n, i in (a, b)])
        right.append(bool(((e[0] - e[1]).square().sum() <= threshold) == s))
    assert m["accuracy_mean"] == pytest.approx(sum(right) / len(right))
    code, out, _ = cli("verify", "pairs", run, "--pairs", pairs, "--root", lfw_root)
    assert code == 0 and out.splitlines()[1].startswith(f"  accuracy {m['accuracy_mean']:.4f} at threshold")
    assert "chosen on the run's" in out


def _images(lines: list[str]) -> list[tuple[str, str]]:
    """The (name, index) of every image the pair lines name, repeats included."""
    out = []
    for line in lines[1:]:
        p = line.split("\t")
        out += [(p[0], p[1]), (p[0], p[2])] if len(p) == 3 else [(p[0], p[1]), (p[2], p[3])]
    return out


def test_each_image_is_embedded_once_in_batches_and_faces_go_through_the_cropper(
    run: Path, lfw_root: Path, tmp_path: Path, monkeypatch
) -> None:
    from cnnkit.tasks.verify import EmbeddingPredictor, evaluate_pairs
    from cnnkit.verification import faces

    embedded: list[list] = []
    real_embed = EmbeddingPredictor.embed

    def spy(self, images: list, batch_size: int = 256) -> torch.Tensor:
        embedded.append(list(images))
        return real_embed(self, images, batch_size)

    cropped: list = []

    class FakeCropper:  # MTCNN is tested in test_faces.py; here only that --faces crops every image once
        def __init__(self, size: int = 112, min_face: int = 20) -> None:
            cropped.append(("min_face", min_face))

        def crops(self, photos: list) -> list:
            cropped.extend(photos)
            return list(photos)  # the paths, decoded as the plain run decodes them (JPEG draft mode included)

    monkeypatch.setattr(EmbeddingPredictor, "embed", spy)
    monkeypatch.setattr(faces, "FaceCropper", FakeCropper)
    pairs = write_pairs(tmp_path / "pairs.txt", pair_lines())
    m = evaluate_pairs(run, pairs, lfw_root, batch_size=4)
    distinct = {lfw_root / n / f"{n}_{int(i):04d}.jpg" for n, i in _images(pair_lines())}
    assert m["n_images"] == len(distinct) and sorted(p for chunk in embedded for p in chunk) == sorted(distinct)
    assert all(len(chunk) <= 4 for chunk in embedded) and not cropped
    plain = m
    embedded.clear()
    m = evaluate_pairs(run, pairs, lfw_root, faces=True, min_face=30)
    assert cropped[0] == ("min_face", 30) and sorted(cropped[1:]) == sorted(distinct)
    assert m["fold_accuracies"] == pytest.approx(plain["fold_accuracies"])  # the fake crop is the image itself


def test_a_missing_image_is_one_line_naming_the_line_or_skipped_and_counted(
    run: Path, lfw_root: Path, tmp_path: Path, cli
) -> None:
    lines = pair_lines()
    lines[3] = f"{NAMES[0]}\t1\t9"  # line 4 of the file, a matched pair: Digit_3 has 4 images
    pairs = write_pairs(tmp_path / "pairs.txt", lines)
    code, out, err = cli("verify", "pairs", run, "--pairs", pairs, "--root", lfw_root)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "line 4: missing image" in err and "Digit_3_0009.jpg" in err and "--skip-bad" in err
    code, out, err = cli("verify", "pairs", run, "--pairs", pairs, "--root", lfw_root, "--skip-bad")
    assert code == 0, err
    assert out.splitlines()[0] == f"{pairs}: 17 pairs (8 matched) in 3 folds, 1 skipped"
    assert out.splitlines()[-1].startswith("  skipped line 4: missing image")
    code, out, _ = cli("verify", "pairs", run, "--pairs", pairs, "--root", lfw_root, "--skip-bad", "--json")
    m = json.loads(out)
    assert m["n_pairs"] == 17 and m["n_skipped"] == len(m["skipped"]) == 1 and m["skipped"][0].startswith("line 4:")


@pytest.mark.parametrize(
    "first, message",
    [("10", "expected 20 pair lines .* found 18"), ("3 x", "first line 'FOLDS PAIRS'"),
     ("0 3", "first line 'FOLDS PAIRS'"), ("3 4 5", r"or 'PAIRS' .* found '3 4 5'"),
     ("3 4", "expected 24 pair lines .* found 18")],
)  # fmt: skip
def test_a_malformed_first_line_is_one_line(
    run: Path, lfw_root: Path, tmp_path: Path, cli, first: str, message: str
) -> None:
    pairs = write_pairs(tmp_path / "pairs.txt", [first, *pair_lines()[1:]])
    code, out, err = cli("verify", "pairs", run, "--pairs", pairs, "--root", lfw_root)
    assert code == 2 and out == "" and err.count("\n") == 1
    with pytest.raises(CnnkitError, match=message):
        lfw_pairs(pairs, lfw_root)


def test_bad_pair_lines_and_a_missing_file_are_one_line(lfw_root: Path, tmp_path: Path, cli) -> None:
    lines = pair_lines()
    lines[2] = f"{NAMES[0]}\tone\t2"
    pairs = write_pairs(tmp_path / "pairs.txt", lines)
    with pytest.raises(CnnkitError, match="'name i j' or 'name1 i name2 j' on line 3 .* found 'Digit_3 one 2'"):
        lfw_pairs(pairs, lfw_root)
    blank = write_pairs(tmp_path / "blank.txt", [lines[0], "", *pair_lines()[1:]])  # line numbers count blanks
    blank.write_text(blank.read_text().replace(f"{NAMES[0]}\t1\t3\n", f"{NAMES[0]}\t1\t9\n", 1))
    with pytest.raises(CnnkitError, match="line 3: missing image"):
        lfw_pairs(blank, lfw_root)
    code, _, err = cli("verify", "pairs", "no-run", "--pairs", tmp_path / "nope.txt", "--root", lfw_root)
    assert code == 2 and "found no such file; check --pairs" in err and err.count("\n") == 1
    code, _, err = cli("verify", "pairs", "no-run", "--root", lfw_root)
    assert code == 2 and "without --pairs" in err


def test_a_run_of_another_task_is_one_line(run: Path, lfw_root: Path, tmp_path: Path, cli) -> None:
    import shutil

    other = shutil.copytree(run, tmp_path / "classify_run")
    card = json.loads((other / "model.json").read_text())
    (other / "model.json").write_text(json.dumps({**card, "task": "classify"}))
    pairs = write_pairs(tmp_path / "pairs.txt", pair_lines())
    code, _, err = cli("verify", "pairs", other, "--pairs", pairs, "--root", lfw_root)
    assert code == 2 and "expected a verify run" in err and "found a classify run" in err and err.count("\n") == 1
