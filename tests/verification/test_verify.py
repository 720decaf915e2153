"""The verify task: losses and metrics on hand-worked examples, P×K batches, pair protocols and bad input,
then a run trained one epoch on digits (identities 0–6; 7–9 held out) through evaluate, report and the
``cnnkit verify`` commands."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnkit.data.datasets import DataSplits, TensorImages
from cnnkit.errors import CnnkitError
from cnnkit.runcard import read_card
from cnnkit.tasks.verify import check_identities, open_set_splits
from cnnkit.verification import contrastive_loss, lfw_pairs, pk_order, triplet_semihard_loss, verification_metrics
from cnnkit.verification.pairs import best_threshold, sample_pairs

# 1-d embeddings 0, 0.1 (identity 0) and 0.25, 1.0 (identity 1): squared distances d01 .01, d02 .0625, d03 1,
# d12 .0225, d13 .81, d23 .5625
EMB, LABELS = torch.tensor([[0.0], [0.1], [0.25], [1.0]]), torch.tensor([0, 0, 1, 1])


def test_triplet_loss_mines_semi_hard_negatives_by_hand() -> None:
    # (0,1): negatives farther than .01 are .0625 and 1 -> closest .0625: .01 − .0625 + .2 = .1475
    # (1,0): .0225 and .81 -> .0225: .01 − .0225 + .2 = .1875
    # (2,3): d_ap .5625, negatives .0625 and .0225 are all nearer -> the farthest, .0625: .5625 − .0625 + .2 = .7
    # (3,2): negatives 1 and .81 -> .81: .5625 − .81 + .2 < 0 -> 0
    expected = (0.1475 + 0.1875 + 0.7 + 0) / 4
    assert float(triplet_semihard_loss(EMB, LABELS, margin=0.2)) == pytest.approx(expected)


def test_contrastive_loss_by_hand() -> None:
    matched = (0.01 + 0.5625) / 2  # d² of (0,1) and (2,3)
    mismatched = (
        (1 - 0.25) ** 2 + 0 + (1 - 0.15) ** 2 + (1 - 0.9) ** 2
    ) / 4  # max(0, 1 − d)² of (0,2) (0,3) (1,2) (1,3)
    assert float(contrastive_loss(EMB, LABELS, margin=1.0)) == pytest.approx(matched + mismatched)


def test_metrics_of_four_pairs_by_hand() -> None:
    dist, same = torch.tensor([0.1, 0.2, 0.3, 0.4]), torch.tensor([True, False, True, False])
    t = best_threshold(dist, same)
    assert t == pytest.approx(0.15)  # calling only the 0.1 pair "same" gets 3 of 4 right
    m = verification_metrics(dist, same, t)
    assert m["auc"] == pytest.approx(0.75)  # 3 of the 4 (matched, mismatched) orderings are right
    assert m["eer"] == pytest.approx(0.5) and m["tar_at_far_1e-2"] == pytest.approx(0.5)
    assert m["accuracy"] == pytest.approx(0.75)


def test_pk_order_gives_every_example_company_and_is_seeded() -> None:
    labels = torch.arange(10).repeat_interleave(9)  # 10 identities × 9 images
    order = pk_order(labels, batch_size=16, k=4, seed=3)
    assert torch.equal(order, pk_order(labels, 16, 4, seed=3)) and not torch.equal(order, pk_order(labels, 16, 4, 4))
    assert len(set(order.tolist())) == len(order) == 80  # 9 = 4 + 4 + 1: the single one waits for another epoch
    groups = order.view(-1, 4)  # batches of 16 are P = 4 identities × K = 4 images
    assert all(len(labels[g].unique()) == 1 for g in groups)


def _distinct(p) -> int:
    return len({tuple(sorted(ab)) for ab in zip(p.a.tolist(), p.b.tolist())})


def test_sampled_pairs_are_distinct_balanced_and_never_repeat_where_few_exist() -> None:
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2])  # matched pairs: 1 + 1 + 3 = 5; mismatched: 2·2 + 2·3 + 2·3 = 16
    p = sample_pairs(labels, 20, seed=0)
    assert (p.a != p.b).all() and torch.equal(labels[p.a] == labels[p.b], p.same)
    assert (int(p.same.sum()), int((~p.same).sum()), _distinct(p)) == (5, 16, 21)  # each pair once
    q = sample_pairs(labels, 3, seed=0)  # fewer asked than there are: that many, still without repeats
    assert (int(q.same.sum()), int((~q.same).sum()), _distinct(q)) == (3, 3, 6)
    r = sample_pairs(torch.arange(3000) % 3, 50, seed=0)  # millions of pairs: drawn at random, balanced
    assert int(r.same.sum()) == 50 == int((~r.same).sum()) and (r.a != r.b).all()
    assert torch.equal(torch.arange(3000)[r.a] % 3 == torch.arange(3000)[r.b] % 3, r.same)
    with pytest.raises(CnnkitError, match="at least 2 identities"):
        sample_pairs(torch.tensor([0, 1, 2]), 5)


def test_lfw_pairs_file_and_missing_images(tmp_path: Path) -> None:
    for name, n in (("Alice", 2), ("Bob", 1)):
        (tmp_path / name).mkdir()
        for i in range(1, n + 1):
            Image.new("RGB", (8, 8)).save(tmp_path / name / f"{name}_{i:04d}.jpg")
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1\t1\nAlice\t1\t2\nAlice\t1\tBob\t1\n")
    found, skipped = lfw_pairs(pairs, tmp_path)
    assert [(a.name, b.name, same) for a, b, same, _ in found] == [
        ("Alice_0001.jpg", "Alice_0002.jpg", True), ("Alice_0001.jpg", "Bob_0001.jpg", False)]  # fmt: skip
    pairs.write_text("1\t1\nAlice\t1\t3\nAlice\t1\tBob\t1\n")
    with pytest.raises(CnnkitError, match="missing image .*Alice_0003.jpg"):
        lfw_pairs(pairs, tmp_path)
    found, skipped = lfw_pairs(pairs, tmp_path, skip_bad=True)
    assert len(found) == 1 and skipped == [f"line 2: missing image {tmp_path / 'Alice' / 'Alice_0003.jpg'}"]
    Image.new("RGB", (8, 8)).save(tmp_path / "Alice" / "Alice_0003.png")  # a user's own faces, saved as PNG
    found, skipped = lfw_pairs(pairs, tmp_path)
    assert [(a.name, b.name) for a, b, _, _ in found] == [("Alice_0001.jpg", "Alice_0003.png"),
                                                          ("Alice_0001.jpg", "Bob_0001.jpg")]  # fmt: skip


def test_an_identity_with_one_image_is_one_clear_error_or_skipped() -> None:
    ds = TensorImages(torch.zeros(5, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 0, 1, 2, 2]))
    with pytest.raises(CnnkitError, match="at least 2 images per identity .* found 1 for b"):
        check_identities(ds, ["a", "b", "c"], "test", False, [])
    skipped: list = []
    kept = check_identities(ds, ["a", "b", "c"], "test", True, skipped)
    assert kept.labels.tolist() == [0, 0, 2, 2] and skipped[0][0] == "b"


def _embedder(dim: int, grid: int = 2) -> torch.nn.Module:
    from cnnkit.verification.embedder import Embedder, headless

    backbone = headless("smallcnn", 1)
    backbone.default_input = (1, 28, 28)
    return Embedder(backbone, dim=dim, grid=grid)  # pooled features: 128 channels × 2 × 2 = 512


def test_pca_embedding_finds_the_principal_directions_and_keeps_the_random_state() -> None:
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = _embedder(dim=3)
    g = torch.Generator().manual_seed(1)
    e1, e2 = torch.eye(512)[5], torch.eye(512)[100]  # spreads 10 and 3 along them, 0.01 noise elsewhere
    centre = torch.rand(512, generator=g)
    feats = centre + 10 * torch.randn(300, 1, generator=g) * e1 + 3 * torch.randn(300, 1, generator=g) * e2
    feats = feats + 0.01 * torch.randn(300, 512, generator=g)
    x = torch.randn(4, 1, 28, 28)
    model.eval()
    before = model(x)  # not fitted yet: the trained projection, normalised
    head = model.backbone.forward_head(model.backbone.forward_features(x), pre_logits=True)
    torch.testing.assert_close(before, F.normalize(model.embed(head), dim=1))
    state = torch.random.get_rng_state()
    model.fit_projection(feats)
    assert torch.equal(torch.random.get_rng_state(), state) and bool(model.fitted)
    torch.testing.assert_close(model.centre, feats.mean(0))
    unit = F.normalize(model.basis, dim=0)
    assert abs(unit[:, 0] @ e1) > 0.999 and abs(unit[:, 1] @ e2) > 0.999
    torch.testing.assert_close(unit.T @ unit, torch.eye(3), atol=1e-4, rtol=0)
    # one scale for every direction: the training features' RMS distance from their centre, sqrt(10² + 3² + …)
    rms = (feats - feats.mean(0)).square().sum(1).mean().sqrt()
    torch.testing.assert_close(model.basis.norm(dim=0), torch.full((3,), 1 / float(rms)), rtol=0.01, atol=0)
    torch.testing.assert_close(((feats - model.centre) @ model.basis).square().sum(1).mean(), torch.tensor(1.0),
                               rtol=0.01, atol=0)  # fmt: skip
    torch.testing.assert_close(model(x), (model.features(x) - model.centre) @ model.basis)  # not normalised
    assert model(x).shape == (4, 3)
    model.pca_l2 = True  # as runs saved before the unnormalised PCA embedding
    torch.testing.assert_close(model(x), F.normalize((model.features(x) - model.centre) @ model.basis, dim=1))


def test_pca_embedding_with_fewer_images_than_dimensions_keeps_the_rest_zero() -> None:
    model = _embedder(dim=8)
    model.fit_projection(torch.randn(5, 512))  # 5 centred points span 4 directions
    assert (model.basis[:, :4].norm(dim=0) > 0).all() and not model.basis[:, 4:].any()
    model.eval()
    assert torch.isfinite(model(torch.randn(2, 1, 28, 28))).all()


def test_an_embedder_without_grid_features_has_nothing_to_fit() -> None:
    from cnnkit.runtime import Normalize
    from cnnkit.tasks.verify import fit_embedding

    model = _embedder(dim=4, grid=0)  # as FaceNet's own embedding and runs from before the PCA embedding
    images = TensorImages(torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8), torch.tensor([0, 0, 1, 1, 2, 2]))
    model.features = lambda x: pytest.fail("features computed for an embedder with nothing to fit")
    fit_embedding(model, images, Normalize((0.5,), (0.5,), torch.device("cpu"), channels_last=False))
    assert not hasattr(model, "basis") and model(torch.randn(2, 1, 28, 28)).shape == (2, 4)


def test_open_set_run_evaluate_and_report(run: Path, capsys) -> None:
    from cnnkit.tasks import evaluate_runs, report
    from cnnkit.tasks.verify import EmbeddingPredictor

    card = json.loads((run / "model.json").read_text())
    fields = card["task_fields"]
    assert fields["test_identities"] == ["7", "8", "9"] and fields["train_identities"] == [str(i) for i in range(7)]
    model = EmbeddingPredictor.from_run(run).model
    assert fields["embedding_grid"] == 2 and bool(model.fitted) and model.basis.abs().sum() > 0  # saved with its fit
    assert json.loads((run / "metrics.json").read_text())["val_auc"] > 0.75  # it learned the training identities
    [(m, text)] = evaluate_runs([str(run)])
    assert m["identities"] == ["7", "8", "9"] and m["n_pairs"] == 2000 and 0 <= m["eer"] <= 1
    assert "TAR@FAR=1e-3" in text and "one-shot identification" in text
    assert json.loads((run / "verify.json").read_text())["threshold"] == m["threshold"]
    assert report(run).is_file() and (run / "report_files" / "roc.png").is_file()


def test_embeddings_come_from_the_folded_copy_and_match_the_model(run: Path) -> None:
    from cnnkit.tasks.verify import EmbeddingPredictor

    pred = EmbeddingPredictor.from_run(run)
    images = [np.random.default_rng(i).integers(0, 256, (8, 8), dtype=np.uint8) for i in range(4)]
    with torch.no_grad():
        want = pred.model.eval()(pred.normalize(torch.stack([pred.to_tensor(im) for im in images])))
    torch.testing.assert_close(pred.embed(images), want, rtol=1e-4, atol=1e-5)
    fast, _ = pred.inference_model()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in pred.model.modules())


def _parser() -> argparse.ArgumentParser:
    from cnnkit.cli import verify

    parser = argparse.ArgumentParser()
    verify.add_commands(parser.add_subparsers())
    return parser


def test_verify_enroll_identify_commands(run: Path, tmp_path: Path, capsys) -> None:
    from sklearn.datasets import load_digits

    d = load_digits()
    paths = {}
    for digit in (7, 8):  # one image per unseen identity: the one-shot case
        (tmp_path / "gallery" / str(digit)).mkdir(parents=True)
        for k, i in enumerate(np.flatnonzero(d.target == digit)[:2]):
            path = tmp_path / ("gallery" if k == 0 else "probe") / str(digit) / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray((d.images[i] * 16).clip(0, 255).astype(np.uint8)).save(path)
            paths[(digit, k)] = str(path)
    parse = _parser().parse_args
    args = parse(["verify", str(run), paths[(7, 0)], paths[(7, 1)], "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["same"] == (out["distance"] <= out["threshold"])
    args = parse(["verify", "enroll", str(run), "--gallery", str(tmp_path / "gallery")])
    assert args.func(args) == 0 and "enrolled 2 identities" in capsys.readouterr().out
    args = parse(["verify", "identify", str(run), paths[(7, 1)], "--json"])
    assert args.func(args) == 0
    matches = json.loads(capsys.readouterr().out)[0]["matches"]
    assert all(m["identity"] in ("7", "8") and m["distance"] <= out["threshold"] for m in matches)
    with pytest.raises(CnnkitError, match="expected RUN A B"):
        args = parse(["verify", str(run), paths[(7, 0)]])
        args.func(args)


def _photo(path: Path, image: np.ndarray) -> str:
    Image.fromarray(image).convert("RGB").save(path, quality=95)
    return str(path)


@pytest.mark.skipif(
    not importlib.util.find_spec("facenet_pytorch"), reason="MTCNN weights (facenet-pytorch) not installed"
)
def test_verify_faces_on_photographs(run: Path, tmp_path: Path, capsys) -> None:
    from skimage import data

    astronaut = data.astronaut()
    canvas = np.full((420, 600, 3), 90, np.uint8)  # the same photo at 3/4 size, on a grey canvas, shifted
    canvas[20:404, 200:584] = np.asarray(Image.fromarray(astronaut).resize((384, 384), Image.Resampling.LANCZOS))
    a, b = _photo(tmp_path / "a.jpg", astronaut), _photo(tmp_path / "b.jpg", canvas)
    parse = _parser().parse_args
    distance = {}
    for faces in ([], ["--faces"]):
        args = parse(["verify", str(run), a, b, "--json", *faces])
        assert args.func(args) == 0
        distance[bool(faces)] = json.loads(capsys.readouterr().out)["distance"]
    # the aligned face crops of the two photos are nearly the same picture; the whole photos are not
    assert distance[True] < 0.2 * distance[False]
    (tmp_path / "gallery" / "astronaut").mkdir(parents=True)
    (tmp_path / "gallery" / "cameraman").mkdir()
    _photo(tmp_path / "gallery" / "astronaut" / "1.jpg", astronaut)
    _photo(tmp_path / "gallery" / "cameraman" / "1.jpg", data.camera())
    args = parse(["verify", "enroll", str(run), "--gallery", str(tmp_path / "gallery"), "--faces"])
    assert args.func(args) == 0 and "enrolled 2 identities" in capsys.readouterr().out
    args = parse(["verify", "identify", str(run), b, "--faces", "--top", "1", "--json"])
    assert args.func(args) == 0
    matches = json.loads(capsys.readouterr().out)[0]["matches"]
    assert [m["identity"] for m in matches] == ["astronaut"]
    args = parse(["verify", str(run), a, _photo(tmp_path / "cat.jpg", data.chelsea()), "--faces"])
    with pytest.raises(CnnkitError, match=r"expected a face in .*cat\.jpg, found none"):
        args.func(args)


def test_a_run_saved_before_the_pca_embedding_still_loads_with_its_projection(run: Path, tmp_path: Path) -> None:
    import shutil

    import torch.nn.functional as F
    from safetensors.torch import load_file, save_file

    from cnnkit.tasks.verify import EmbeddingPredictor

    old = tmp_path / "old"
    shutil.copytree(run, old)
    card = json.loads((old / "model.json").read_text())
    del card["task_fields"]["embedding_grid"]  # what such a run's card holds
    (old / "model.json").write_text(json.dumps(card))
    sd = {k: v for k, v in load_file(old / "model.safetensors").items() if k not in ("centre", "basis", "fitted")}
    save_file(sd, old / "model.safetensors")
    model = EmbeddingPredictor.from_run(old).model
    assert model.grid == 0 and not hasattr(model, "basis")
    x = torch.randn(3, 1, 8, 8)
    head = model.backbone.forward_head(model.backbone.forward_features(x), pre_logits=True)
    torch.testing.assert_close(model(x), F.normalize(model.embed(head), dim=1))


def test_a_run_saved_before_the_unnormalised_pca_embedding_keeps_its_l2_norm(run: Path, tmp_path: Path) -> None:
    import shutil

    from cnnkit.tasks.verify import EmbeddingPredictor

    x = torch.randn(3, 1, 8, 8)
    now = EmbeddingPredictor.from_run(run).model
    assert read_card(run).task_fields["pca_l2"] is False and not now.pca_l2 and bool(now.fitted)
    assert not torch.allclose(now(x).norm(dim=1), torch.ones(3))
    old = tmp_path / "old"
    shutil.copytree(run, old)
    card = json.loads((old / "model.json").read_text())
    del card["task_fields"]["pca_l2"]  # what such a run's card holds
    (old / "model.json").write_text(json.dumps(card))
    before = EmbeddingPredictor.from_run(old).model
    assert before.pca_l2 and torch.allclose(before.basis, now.basis)
    torch.testing.assert_close(before(x), torch.nn.functional.normalize(now(x), dim=1))


def test_the_loss_its_margin_and_the_embedding_width_are_config_keys(cli, tmp_path: Path) -> None:
    out = tmp_path / "contrastive"
    args = ["train", "--task", "verify", "--data", "digits", "--epochs", "1", "--batch-size", "64", "--quiet"]
    code, _, err = cli(*args, "--out", out, "--set", "task.metric_loss=contrastive", "--set", "task.embedding_dim=16")
    assert code == 0, err
    fields = read_card(out).task_fields
    assert (fields["loss"], fields["margin"], fields["embedding_dim"]) == ("contrastive", 1.0, 16)
    from cnnkit.tasks.verify import EmbeddingPredictor

    assert EmbeddingPredictor.from_run(out).embed([np.zeros((8, 8), np.uint8)]).shape == (1, 16)
    for bad, words in (("task.metric_loss=arcface", "task.metric_loss one of triplet, contrastive, found 'arcface'"),
                       ("task.margin=0", "task.margin")):  # fmt: skip
        code, _, err = cli(*args, "--out", tmp_path / "bad", "--set", bad)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "bad" / "model.safetensors").exists()


def _identities(n: int, per: int = 3) -> DataSplits:
    """n identities with ``per`` training and 1 validation and 1 test image each (4×4 zeros)."""

    def split(k: int) -> TensorImages:
        return TensorImages(torch.zeros(n * k, 1, 4, 4, dtype=torch.uint8), torch.arange(n).repeat_interleave(k))

    return DataSplits(split(per), split(1), split(1), [f"id{i}" for i in range(n)], 1, (4, 4), "test")


def test_validation_pairs_come_from_identities_held_out_of_training_when_there_are_enough() -> None:
    many = open_set_splits(_identities(30))  # 9 tested; of the 21 others 10 % (2) validate, 19 train
    assert sorted(set(many.train.labels.tolist())) == list(range(19))
    assert sorted(set(many.test.labels.tolist())) == list(range(21, 30))
    assert many.val.labels.tolist() == [19] * 3 + [20] * 3 + [19, 20] * 2  # all their images, of every split
    few = open_set_splits(_identities(10))  # Fashion-MNIST's 7 training identities are all needed for training
    assert set(few.val.labels.tolist()) == set(few.train.labels.tolist()) == set(range(7))
    asked = open_set_splits(_identities(10), val_identities=2)
    assert (set(asked.train.labels.tolist()), set(asked.val.labels.tolist())) == (set(range(5)), {5, 6})
    assert set(open_set_splits(_identities(30), val_identities=0).val.labels.tolist()) == set(range(21))
    with pytest.raises(CnnkitError, match="leave at least 2 of the 7 training identities to train on, found 6"):
        open_set_splits(_identities(10), val_identities=6)


def test_a_run_validated_on_unseen_identities_says_so(cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "--task", "verify", "--data", "digits", "--epochs", "1", "--batch-size", "64", "--quiet"]
    code, _, err = cli(*args, "--out", out, "--set", "task.val_identities=2")
    assert code == 0, err
    fields = read_card(out).task_fields
    assert (fields["train_identities"], fields["val_identities"]) == (list("01234"), ["5", "6"])
    code, _, err = cli("evaluate", out)
    assert code == 0, err
    assert json.loads((out / "verify.json").read_text())["chosen_on"] == (
        "2000 validation pairs of 2 identities not trained on"
    )
    assert "validated on identities (not trained on) | 5, 6" in (out / "report.md").read_text()


def test_a_run_from_before_held_out_validation_identities_is_evaluated_as_it_was_trained(cli, tmp_path: Path) -> None:
    """30 identities: training holds 2 of the 21 out for validation by default. A card without ``val_identities``
    (a run saved before them, trained on all 21) is evaluated with its validation pairs from those 21 again."""
    rng = np.random.default_rng(0)
    for i in range(30):
        base = rng.integers(0, 255, (16, 16))
        for j in range(5):
            folder = tmp_path / "faces" / f"person_{i:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)).save(
                folder / f"{j}.png"
            )
    out = tmp_path / "run"
    code, _, err = cli("train", "--task", "verify", "--data", tmp_path / "faces", "--epochs", "1", "--batch-size", "32",
                       "--set", "data.image_size=16", "--out", out, "--quiet")  # fmt: skip
    assert code == 0, err
    assert read_card(out).task_fields["val_identities"] == ["person_19", "person_20"]
    assert cli("evaluate", out)[0] == 0
    assert json.loads((out / "verify.json").read_text())["chosen_on"].endswith("of 2 identities not trained on")
    card = json.loads((out / "model.json").read_text())
    del card["task_fields"]["val_identities"]
    (out / "model.json").write_text(json.dumps(card))
    assert cli("evaluate", out)[0] == 0
    chosen_on = json.loads((out / "verify.json").read_text())["chosen_on"]
    assert chosen_on.split()[1:] == ["validation", "pairs"], chosen_on  # of the training identities' held-out images


def test_explain_a_verify_run_shows_its_embedding_layer(run: Path, cli) -> None:
    code, out, err = cli("explain", run)  # on the meta device: the fitted flag has no value there
    assert code == 0, err
    assert "embed" in out and "Linear 128→128" in out and out.rstrip().endswith("output 128")


def test_new_people_are_evaluated_whole_at_the_runs_own_threshold(run: Path, cli, tmp_path) -> None:
    """`evaluate --data` on a folder of other people: all of its identities, every image, at the threshold the run
    chose on its own validation pairs (verify.json stays as it was: `cnnkit verify` decides as before)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    people = tmp_path / "people"
    for name, digit in (("anna", 7), ("ben", 8), ("cleo", 9)):
        (people / name).mkdir(parents=True)
        for i in np.flatnonzero(d.target == digit)[:12]:
            Image.fromarray((d.images[i] * 16).clip(0, 255).astype(np.uint8)).save(people / name / f"{i}.png")
    assert cli("evaluate", run)[0] == 0
    before = (run / "verify.json").read_text()
    code, out, err = cli("evaluate", run, "--data", people, "--json", tmp_path / "m.json")
    assert code == 0, err
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["identities"] == ["anna", "ben", "cleo"] and m["n_images"] == 36 and m["split"] == "all"
    assert m["threshold"] == json.loads(before)["threshold"] and (run / "verify.json").read_text() == before
    assert json.loads((run / "eval_all_people.json").read_text())["identities"] == ["anna", "ben", "cleo"]
    assert out.startswith(f"every image in {people}: 36 images of 3 identities never seen in training")
    code, _, err = cli("evaluate", run, "--data", people, "--split", "val")
    assert code == 2 and "expected --split test" in err
    (people / "3").mkdir()  # a name the run trained on is not a new person: left out
    for f in list((people / "anna").iterdir())[:3]:
        (people / "3" / f.name).write_bytes(f.read_bytes())
    code, out, _ = cli("evaluate", run, "--data", people)
    assert code == 0 and "36 images of 3 identities" in out
    own = tmp_path / "own"
    (own / "0").mkdir(parents=True)
    (own / "1").mkdir()
    for f in list((people / "anna").iterdir())[:2]:
        (own / "0" / f.name).write_bytes(f.read_bytes())
        (own / "1" / f.name).write_bytes(f.read_bytes())
    code, _, err = cli("evaluate", run, "--data", own)
    assert code == 2 and "found only its own (0, 1" in err
