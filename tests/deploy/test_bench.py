"""``cnnkit bench`` on a tiny model: every column present, medians positive, the machine named; bad input is one
line."""

from __future__ import annotations

import json

from cnnkit.deploy.bench import interleaved_medians, median_seconds, published_top1


def test_bench_table_json_markdown_and_plot(dcli, tmp_path):
    args = ("bench", "lenet5", "--batch", "1,4", "--repeats", "2")
    code, text, err = dcli(*args, "--json", "--plot", tmp_path / "b.png")
    assert code == 0, err
    table = json.loads(text[: text.rindex("}") + 1])
    row = table["rows"][0]
    assert row["model"] == "lenet5" and row["params"] == 61706 and row["top1"] is None  # LeNet-5: 61,706 weights
    assert set(row["ms_per_image"]) == {f"{b}@{n}" for b in ("eager", "folded", "onnxruntime") for n in (1, 4)}
    assert all(v > 0 for v in row["ms_per_image"].values()) and row["train_images_per_s"] > 0
    assert table["machine"]["threads"] >= 1 and table["machine"]["cpu"]
    assert (tmp_path / "b.png").stat().st_size > 1000
    code, text, _ = dcli(*args, "--markdown", "--no-train", "--backend", "eager,folded")
    assert code == 0 and text.startswith("| model | params | MACs") and "Measured on" in text
    assert "ms/img folded b1" in text.splitlines()[0]


def test_published_top1_comes_from_the_weights_metadata_only():
    assert published_top1("resnet18") == 69.758  # torchvision's IMAGENET1K_V1 metadata
    assert published_top1("efficientnet_lite0") is None and published_top1("lenet5") is None


def test_median_of_repeats():
    calls = []
    assert median_seconds(lambda: calls.append(1), repeats=5, warmup=2) >= 0 and len(calls) == 7


def test_backends_are_timed_in_turns_of_a_block_and_each_gets_its_repeats():
    order: list[str] = []
    med = interleaved_medians({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, 7, warmup=1, block=3)
    assert order == ["a", "b"] + ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3 + ["a", "b"]
    assert set(med) == {"a", "b"} and min(med.values()) >= 0


def test_bench_bad_input(dcli):
    for args, words in [
        (("bench", "nope"), "registered models"),
        (("bench", "lenet5", "--backend", "tvm"), "tvm"),
        (("bench", "lenet5", "--batch", "x"), "batch sizes"),
        (("bench", "--batch", "0"), "positive"),
    ]:
        code, _, err = dcli(*args)
        assert code == 2 and words in err and "Traceback" not in err, err
