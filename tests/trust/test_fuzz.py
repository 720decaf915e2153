"""Fuzzed user input: every bad file or string gives one clear ``CnnkitError``, never another exception or a hang.

Targets: image decoding (random and mutated PNG/JPEG bytes, truncated files, oversized headers), the YAML
layer-list parser, ``--set`` overrides, the box label parsers (YOLO, CSV, VOC, COCO files mutated), and the
weights loaders (random bytes, truncated safetensors, pickles with globals). Each test runs a bounded number of
examples (``FUZZ``) with a per-example deadline, so a hang or a slow path fails the test; the whole file runs in
well under 30 s on one core. ``pytest tests/trust/test_fuzz.py --hypothesis-show-statistics`` prints the counts.
"""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import resource
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image
from safetensors.torch import save as save_safetensors

from cnnkit.config import Config, build_config
from cnnkit.data.images import BadImageError, image_mode, load_image
from cnnkit.data.labels import open_box_dataset
from cnnkit.engine.checkpoint import load_state, load_weights
from cnnkit.errors import CnnkitError
from cnnkit.models import create_model
from cnnkit.models.pretrained import read_state_dict
from cnnkit.models.spec import load_spec
from tests.data.test_labels import coco_dataset, csv_dataset, voc_dataset, yolo_dataset

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


def fuzz(n: int, deadline_ms: int = 2000):
    """Bounded hypothesis settings: ``n`` examples, each under the deadline; no example database on disk."""
    return settings(
        max_examples=n,
        deadline=deadline_ms,
        database=None,
        derandomize=True,  # the same cases on every run: a failure reproduces, the suite's time is stable
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def mutate(data: bytes, draw_ops: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, value) edits: 0 flip a byte, 1 truncate, 2 insert a byte, 3 delete a byte."""
    b = bytearray(data)
    for kind, pos, value in draw_ops:
        if not b:
            break
        i = pos % len(b)
        if kind == 0:
            b[i] ^= value or 1
        elif kind == 1:
            del b[i:]
        elif kind == 2:
            b.insert(i, value)
        else:
            del b[i]
    return bytes(b)


EDITS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2**31), st.integers(0, 255)), min_size=1, max_size=6)


# --- images -----------------------------------------------------------------------------------------------------


def encoded(fmt: str, mode: str = "RGB", size: tuple[int, int] = (9, 7)) -> bytes:
    rng = np.random.default_rng(0)
    chans = {"RGB": 3, "L": 1}[mode]
    a = rng.integers(0, 256, (size[1], size[0], chans), dtype=np.uint8).squeeze(-1 if chans == 1 else ())
    buf = io.BytesIO()
    Image.fromarray(a, mode).save(buf, fmt)
    return buf.getvalue()


SEEDS = {"png": encoded("PNG"), "jpeg": encoded("JPEG"), "gray.png": encoded("PNG", "L"), "gif": encoded("GIF")}


def decodes_cleanly(path: Path) -> None:
    """load_image either gives a uint8 Tensor[C, 8, 8] or raises BadImageError; image_mode likewise."""
    for chans in (1, 3):
        try:
            x = load_image(path, chans, (8, 8))
        except BadImageError as e:
            assert str(path.name) in str(e) and "\n" not in str(e)
        else:
            assert x.shape == (chans, 8, 8) and x.dtype == torch.uint8
    with contextlib.suppress(BadImageError):
        assert isinstance(image_mode(path), str)


@fuzz(60)
@given(data=st.binary(max_size=512))
def test_random_bytes_are_a_bad_image(tmp_path, data):
    path = tmp_path / "random.png"
    path.write_bytes(data)
    decodes_cleanly(path)


@fuzz(150)
@given(seed=st.sampled_from(sorted(SEEDS)), edits=EDITS)
def test_mutated_and_truncated_images_decode_or_are_bad(tmp_path, seed, edits):
    path = tmp_path / f"m.{seed.rsplit('.', 1)[-1]}"
    path.write_bytes(mutate(SEEDS[seed], edits))
    decodes_cleanly(path)


@fuzz(40)
@given(seed=st.sampled_from(sorted(SEEDS)), cut=st.floats(0, 1, exclude_max=True))
def test_truncated_images(tmp_path, seed, cut):
    data = SEEDS[seed]
    path = tmp_path / f"t.{seed.rsplit('.', 1)[-1]}"
    path.write_bytes(data[: int(cut * len(data))])
    decodes_cleanly(path)


def png_with_header(width: int, height: int, bit_depth: int = 8, color: int = 2) -> bytes:
    """A PNG whose IHDR claims width×height (CRC right) with a tiny, wrong IDAT: a decompression bomb's header."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@fuzz(40, deadline_ms=1000)
@given(width=st.integers(1, 2**31 - 1), height=st.integers(1, 2**31 - 1))
def test_oversized_headers_are_refused_before_decoding(tmp_path, width, height):
    assume(width * height > 40_000_000)
    path = tmp_path / "huge.png"
    path.write_bytes(png_with_header(width, height))
    with pytest.raises(BadImageError, match="huge.png"):
        load_image(path, 3, (8, 8))


def huge_header(fmt: str) -> bytes:
    """A small valid file of ``fmt`` whose header is edited to claim about 4 gigapixels."""
    data = bytearray(encoded({"jpg": "JPEG", "gif": "GIF", "bmp": "BMP"}[fmt]))
    if fmt == "jpg":
        i = data.find(b"\xff\xc0")  # SOF0: length, precision, height, width
        data[i + 5 : i + 9] = struct.pack(">HH", 65000, 65000)
    elif fmt == "gif":
        data[6:10] = struct.pack("<HH", 65535, 65535)  # the logical screen
    else:
        data[18:26] = struct.pack("<ii", 100_000, 100_000)  # BITMAPINFOHEADER width, height
    return bytes(data)


@pytest.mark.parametrize("fmt", ["jpg", "gif", "bmp"])
def test_oversized_headers_of_other_formats_are_refused_in_bounded_memory(tmp_path, fmt):
    path = tmp_path / f"huge.{fmt}"
    path.write_bytes(huge_header(fmt))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux: the peak so far
    for read in (lambda: load_image(path, 3, (8, 8)), lambda: image_mode(path)):
        with pytest.raises(BadImageError, match=f"huge.{fmt}"):
            read()
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024  # decoding would take GiBs


# --- the YAML layer-list parser -----------------------------------------------------------------------------------

LAYER_TYPES = ["conv", "pool", "relu", "tanh", "sigmoid", "lrn", "batchnorm", "dropout", "flatten", "fc", "softmax"]
VALUES = st.one_of(
    st.integers(-3, 9), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(),
    st.sampled_from(["max", "avg", "same", "x", ""]), st.lists(st.integers(0, 5), max_size=3),
)  # fmt: skip
KEYS = st.sampled_from(["out", "kernel", "stride", "padding", "dilation", "groups", "bias", "mode", "ceil", "global",
                        "size", "alpha", "beta", "k", "eps", "p", "name", "typo"])  # fmt: skip
LAYER = st.fixed_dictionaries({"type": st.sampled_from([*LAYER_TYPES, "deconv", 3])}, optional={}).flatmap(
    lambda d: st.dictionaries(KEYS, VALUES, max_size=4).map(lambda extra: {**extra, **d})
)
SPEC = st.fixed_dictionaries(
    {"layers": st.lists(LAYER, max_size=7)},
    optional={
        "input": st.one_of(st.lists(st.integers(-1, 40), max_size=4), st.text(max_size=5)),
        "num_classes": st.one_of(st.integers(-2, 12), st.text(max_size=3)),
        "mean": st.lists(st.floats(), max_size=3),
        "std": st.lists(st.floats(), max_size=3),
        "name": st.text(max_size=8),
        "extra": st.integers(),
    },
)


def build_spec(path: Path) -> None:
    """Parse, then build on the meta device (no weights allocated, so a huge layer costs nothing)."""
    try:
        load_spec(path)
        with torch.device("meta"):
            model = create_model(str(path))
    except CnnkitError as e:
        assert "\n" not in str(e).strip() or "spec" in str(e).lower()
        return
    assert model.num_classes >= 1


@fuzz(120, deadline_ms=3000)
@given(spec=SPEC)
def test_structured_layer_lists_parse_or_fail_cleanly(tmp_path, spec):
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump(spec))
    build_spec(path)


LENET = yaml.safe_load((Path(__file__).resolve().parents[2] / "cnnkit/configs/specs/lenet5.yaml").read_text())
FIELD_EDITS = st.lists(
    st.tuples(st.integers(0, len(LENET["layers"]) - 1), KEYS | st.just("type"), VALUES | st.sampled_from(LAYER_TYPES)),
    min_size=1,
    max_size=3,
)
TOP_EDITS = st.dictionaries(st.sampled_from(["input", "mean", "std", "num_classes"]), VALUES, max_size=2)


@fuzz(150, deadline_ms=3000)
@given(edits=FIELD_EDITS, top=TOP_EDITS)
def test_lenet_with_edited_fields_parses_or_fails_cleanly(tmp_path, edits, top):
    spec = {**LENET, **top, "layers": [dict(layer) for layer in LENET["layers"]]}
    for i, key, value in edits:
        spec["layers"][i][key] = value
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump(spec))
    build_spec(path)


@fuzz(60)
@given(edits=EDITS)
def test_mutated_layer_list_files_parse_or_fail_cleanly(tmp_path, edits):
    source = Path(__file__).resolve().parents[2] / "cnnkit" / "configs" / "specs" / "lenet5.yaml"
    path = tmp_path / "net.yaml"
    path.write_bytes(mutate(source.read_bytes(), edits))
    build_spec(path)


# --- --set overrides ----------------------------------------------------------------------------------------------

CONFIG_KEYS = [f"{section}.{f}" for section in ("data", "model", "optim", "train", "task")
               for f in getattr(Config(), section).__dataclass_fields__]  # fmt: skip
SET_VALUES = st.one_of(
    st.text(max_size=12), st.integers(-10**20, 10**20).map(str), st.floats().map(str),
    st.sampled_from(["true", "false", "null", "[1, 2]", "{a: 1}", "nan", "inf", "-0", "1e400", "[", "}", "'x"]),
)  # fmt: skip
SET_ITEM = st.one_of(
    st.tuples(st.sampled_from(CONFIG_KEYS), SET_VALUES).map("=".join),
    st.text(max_size=20),  # no '=', unknown keys, empty sections...
    st.tuples(st.text(max_size=8), SET_VALUES).map("=".join),
)


@fuzz(200, deadline_ms=1000)
@given(items=st.lists(SET_ITEM, min_size=1, max_size=4))
def test_set_overrides_build_a_config_or_fail_cleanly(items):
    try:
        cfg = build_config(sets=items)
    except CnnkitError as e:
        assert str(e) and "\n" not in str(e)
        return
    assert isinstance(cfg, Config)


# --- box label parsers ----------------------------------------------------------------------------------------------

LABEL_FILES = {  # format -> (builder, the files a user edits by hand, what to open)
    "yolo": (yolo_dataset, ["labels/train/a.txt", "labels/val/c.txt", "data.yaml"], "data.yaml"),
    "csv": (csv_dataset, ["labels.csv"], "labels.csv"),
    "voc": (voc_dataset, ["Annotations/a.xml", "Annotations/b.xml", "ImageSets/Main/val.txt"], "."),
    "coco": (coco_dataset, ["annotations/instances_train2017.json"], "."),
}
_TEMPLATES: dict[str, Path] = {}


@pytest.fixture(scope="module")
def label_templates(tmp_path_factory) -> dict[str, Path]:
    for fmt, (build, _, _) in LABEL_FILES.items():
        root = tmp_path_factory.mktemp(fmt)
        build(root)
        _TEMPLATES[fmt] = root
    return _TEMPLATES


@fuzz(200, deadline_ms=3000)
@given(fmt=st.sampled_from(sorted(LABEL_FILES)), which=st.integers(0, 2), edits=EDITS, skip_bad=st.booleans())
def test_mutated_label_files_open_or_fail_cleanly(label_templates, tmp_path_factory, fmt, which, edits, skip_bad):
    import shutil

    _, files, target = LABEL_FILES[fmt]
    root = tmp_path_factory.mktemp("case")
    shutil.copytree(label_templates[fmt], root, dirs_exist_ok=True)
    name = files[which % len(files)]
    (root / name).write_bytes(mutate((root / name).read_bytes(), edits))
    try:
        ds = open_box_dataset(root / target, skip_bad=skip_bad)
    except CnnkitError as e:
        assert str(e) and "\n" not in str(e).strip()
        return
    for images in ds.splits.values():
        for im in images:
            for inst in im.instances:
                assert 0 <= inst.label < len(ds.classes)
                assert all(np.isfinite(inst.box))


# --- weights loaders ------------------------------------------------------------------------------------------------


class Evil:
    """A pickle whose unpickling would call a global: the loader must refuse it without running it."""

    def __reduce__(self):
        return (print, ("pwned",))


def weight_files() -> dict[str, bytes]:
    sd = {"0.weight": torch.randn(2, 3), "0.bias": torch.zeros(2)}
    buf = io.BytesIO()
    torch.save(sd, buf)
    return {"st": save_safetensors(sd), "pt": buf.getvalue(), "evil": pickle.dumps({"0.weight": Evil()}),
            "json": json.dumps({"0.weight": [1, 2]}).encode()}  # fmt: skip


WEIGHTS = weight_files()


def loads_or_refuses(path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    for load in (read_state_dict, lambda p: load_weights(model, p), load_state):
        try:
            load(path)
        except CnnkitError as e:
            assert str(e) and "\n" not in str(e).strip()


@fuzz(60)
@given(data=st.binary(max_size=256), suffix=st.sampled_from([".safetensors", ".pt", ".pth", ".bin"]))
def test_random_bytes_are_refused_as_weights(tmp_path, data, suffix, capsys):
    path = tmp_path / f"w{suffix}"
    path.write_bytes(data)
    loads_or_refuses(path)


@fuzz(150)
@given(kind=st.sampled_from(sorted(WEIGHTS)), edits=EDITS, suffix=st.sampled_from([".safetensors", ".pt"]))
def test_mutated_and_truncated_weights_load_or_are_refused(tmp_path, kind, edits, suffix, capsys):
    path = tmp_path / f"w{suffix}"
    path.write_bytes(mutate(WEIGHTS[kind], edits))
    loads_or_refuses(path)
    assert "pwned" not in capsys.readouterr().out  # a global in a pickle never runs


def test_a_pickle_with_globals_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    path.write_bytes(WEIGHTS["evil"])
    for load in (read_state_dict, load_state):
        with pytest.raises(CnnkitError):
            load(path)
    assert "pwned" not in capsys.readouterr().out


# --- what the fuzzing found, kept as plain regression tests ----------------------------------------------------------

LENET_TEXT = (Path(__file__).resolve().parents[2] / "cnnkit/configs/specs/lenet5.yaml").read_text()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("layers: [{type: softmax}]", "to be fc, found nothing"),  # was IndexError
        (LENET_TEXT.replace("mean: [0.5]", "mean: 0.5"), "'mean: "),  # was TypeError
        (LENET_TEXT.replace("std: [0.5]", "std: [x]"), "'std: "),  # was ValueError
        (LENET_TEXT.replace("std: [0.5]", "std: [0]"), "'std: \\[positive"),  # a division by zero later
        (LENET_TEXT.replace("num_classes: 10", "num_classes: .nan"), "'num_classes'"),  # was ValueError
        (LENET_TEXT.replace("num_classes: 10", "num_classes: [1]"), "'num_classes'"),  # was TypeError
        (LENET_TEXT.replace("name: c1", "name: '0.0'"), "layer name without '.'"),  # was KeyError from torch
        (LENET_TEXT.replace("name: c1", "name: forward"), "layer name"),  # was KeyError from torch
    ],
)
def test_layer_list_errors_found_by_fuzzing(tmp_path, text, message):
    path = tmp_path / "net.yaml"
    path.write_text(text)
    with pytest.raises(CnnkitError, match=message), torch.device("meta"):
        create_model(str(path))


def test_a_layer_list_that_is_not_utf8_is_a_clear_error(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_bytes(b"\x80" + LENET_TEXT.encode())
    with pytest.raises(CnnkitError, match="UTF-8"):  # was UnicodeDecodeError
        load_spec(path)


@pytest.mark.parametrize(("fmt", "which"), [("yolo", 0), ("yolo", 2), ("csv", 0), ("voc", 0), ("voc", 2), ("coco", 0)])
def test_label_files_that_are_not_utf8_name_the_file_and_line(label_templates, tmp_path, fmt, which):
    import shutil

    _, files, target = LABEL_FILES[fmt]
    shutil.copytree(label_templates[fmt], tmp_path, dirs_exist_ok=True)
    path = tmp_path / files[which]
    data = path.read_bytes()
    data = data.replace(b"\n", b"\n\xff", 1) if b"\n" in data else data + b"\n\xff"  # line 2: a non-UTF-8 byte
    path.write_bytes(data)
    with pytest.raises(CnnkitError, match=f"UTF-8.*{path.name}:2"):  # was UnicodeDecodeError
        open_box_dataset(tmp_path / target)
