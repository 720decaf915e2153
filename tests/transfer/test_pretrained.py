"""The weights table and safe loading: bit-exact weights, checksums, refused pickles, key adaptation, downloads."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import pickle
import shutil
import threading
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from cnnkit.errors import CnnkitError
from cnnkit.models import create_model, pretrained
from cnnkit.models.pretrained import (
    LITE0,
    TORCHVISION_ZOO,
    Preprocessing,
    WeightsEntry,
    adapt_keys,
    read_state_dict,
    weights_file,
    weights_table,
)


class WritesMarker:
    """Unpickling this object calls ``Path.write_text(marker, "ran")``: a pickle that runs code on load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.write_text, (self.marker, "ran")


class CallsSystem:
    """Unpickling this object runs a shell command (``os.system``) that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_lite0_weights_load_bit_exactly(lite0_state: dict[str, torch.Tensor]) -> None:
    model = create_model("efficientnet_lite0", pretrained=True)
    ours = model.state_dict()
    assert ours.keys() == lite0_state.keys()
    assert all(torch.equal(ours[k], lite0_state[k]) for k in ours)
    assert model.mean == LITE0.preprocessing.mean == (127 / 255,) * 3 and model.std == (128 / 255,) * 3
    assert model.pretrained_cfg is LITE0


def test_table_rows_carry_checksums_preprocessing_and_labels() -> None:
    table = weights_table()
    assert set(table) == {"efficientnet_lite0", *TORCHVISION_ZOO}
    categories = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    assert LITE0.classes == categories and len(categories) == 1000
    assert len(LITE0.sha256) == 64 and LITE0.preprocessing.interpolation == "bicubic"
    r18, r50, goog = table["resnet18"], table["resnet50"], table["googlenet"]
    assert r18.source == "https://download.pytorch.org/models/resnet18-f37072fd.pth" and r18.sha256 == "f37072fd"
    assert (r50.preprocessing.resize, r50.preprocessing.crop) == (232, 224)  # torchvision's V2 recipe
    assert table["inception_v3"].preprocessing.crop == 299
    assert goog.preprocessing.mean == (0.5,) * 3  # trained with transform_input: inputs in [-1, 1]
    assert all(e.sha256 in e.filename for e in table.values() if e.source.startswith("https"))


def test_a_pickle_that_runs_code_is_refused_and_never_runs(tmp_path: Path) -> None:
    live = tmp_path / "proof.txt"
    pickle.loads(pickle.dumps(WritesMarker(live)))  # the payload is live: plain pickle runs it
    assert live.read_text() == "ran"
    markers = [tmp_path / "written.txt", tmp_path / "touched.txt"]
    zipped = tmp_path / "evil.pt"
    torch.save({"conv.weight": torch.zeros(1), "x": WritesMarker(markers[0])}, zipped)  # torch's zip format
    raw = tmp_path / "evil_raw.pth"
    raw.write_bytes(pickle.dumps(CallsSystem(markers[1]), protocol=2))  # a bare pickle
    for path in (zipped, raw):
        with pytest.raises(CnnkitError, match="runs code when loaded") as e:
            create_model("smallcnn", weights=str(path))
        assert "refused, nothing in it was run" in str(e.value) and "\n" not in str(e.value)
    assert "would import" in str(e.value)
    assert not any(m.exists() for m in markers)


def test_checksum_mismatch_is_refused(tmp_path: Path, lite0_file: Path) -> None:
    copy = tmp_path / lite0_file.name  # a local copy of the table's file: verified by its name
    data = bytearray(lite0_file.read_bytes())
    data[-100] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(CnnkitError, match="expected SHA-256 579344248a93"):
        create_model("efficientnet_lite0", pretrained=True, weights=str(copy))
    entry = WeightsEntry("efficientnet_lite0", f"file:{lite0_file}", "0" * 64, LITE0.preprocessing)
    with pytest.raises(CnnkitError, match="corrupt or not these weights"):
        weights_file(entry)


def test_files_that_are_not_state_dicts_are_refused(tmp_path: Path) -> None:
    cases = {"list.pt": [1, 2, 3], "opt.pt": {"epoch": 3, "lr": 0.1}}
    for name, obj in cases.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(CnnkitError, match="expected a state dict"):
            read_state_dict(tmp_path / name)
    (tmp_path / "junk.pth").write_bytes(b"not a weights file")
    with pytest.raises(CnnkitError, match="can't read .Unsupported operand"):
        read_state_dict(tmp_path / "junk.pth")
    (tmp_path / "junk.pt").write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(CnnkitError, match="unreadable data"):
        read_state_dict(tmp_path / "junk.pt")
    with pytest.raises(CnnkitError, match="found no file"):
        read_state_dict(tmp_path / "missing.safetensors")


def test_wrapped_prefixed_and_safetensors_state_dicts_load(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = create_model("smallcnn", num_classes=7, in_chans=1)
    sd = source.state_dict()
    torch.save({"epoch": 9, "state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "ddp.pth")
    save_file({k: v.contiguous() for k, v in sd.items()}, tmp_path / "plain.safetensors")
    for name in ("ddp.pth", "plain.safetensors"):
        model = create_model("smallcnn", weights=str(tmp_path / name))  # 7 classes, read from the file
        assert model.num_classes == 7 and all(torch.equal(model.state_dict()[k], v) for k, v in sd.items())
    with pytest.raises(CnnkitError, match="missing"):
        create_model("lenet5", weights=str(tmp_path / "plain.safetensors"))


def test_densenet_old_key_names_and_auxiliary_heads_are_adapted(tmp_path: Path) -> None:
    torch.manual_seed(0)
    dense = create_model("densenet121").state_dict()
    old = {  # torchvision's published densenet121-a639ec97.pth: "norm.1", "conv.2", no num_batches_tracked
        k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): v
        for k, v in dense.items()
        if not k.endswith("num_batches_tracked")
    }
    assert any(".norm.1." in k for k in old)
    torch.save(old, tmp_path / "densenet121-old.pth")
    model = create_model("densenet121", weights=str(tmp_path / "densenet121-old.pth"), num_classes=4)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in dense.items() if not k.startswith("classifier"))
    with torch.device("meta"):
        goog_aux = create_model("googlenet", aux_logits=True).state_dict()
        goog = create_model("googlenet").state_dict()
    assert adapt_keys(dict(goog_aux), goog).keys() == goog.keys()  # aux1/aux2 dropped when not built


@pytest.fixture
def weights_server(tmp_path: Path):
    """An HTTP server on 127.0.0.1 serving ``tmp_path / "srv"``; yields its base URL."""
    root = tmp_path / "srv"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/", root
    server.shutdown()


def test_torchvision_style_url_downloads_once_into_the_cache(weights_server, monkeypatch, tmp_path: Path) -> None:
    base, root = weights_server
    torch.manual_seed(0)
    sd = create_model("resnet18", num_classes=1000).state_dict()
    tmp = tmp_path / "r18.pth"
    torch.save(sd, tmp)
    name = f"resnet18-{hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]}.pth"  # torchvision's naming rule
    shutil.move(tmp, root / name)
    pre = Preprocessing((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    entry = WeightsEntry("resnet18", base + name, pretrained.hash_prefix(name), pre)
    monkeypatch.setattr(pretrained, "weights_table", lambda: {"resnet18": entry})
    model = create_model("resnet18", pretrained=True, num_classes=3)
    assert model.fc.out_features == 3 and torch.equal(model.layer4[1].conv2.weight, sd["layer4.1.conv2.weight"])
    cached = Path(os.environ["XDG_CACHE_HOME"]) / "cnnkit" / "weights" / name
    (root / name).unlink()  # the second build reads the verified cache, no server needed
    assert cached.is_file() and torch.equal(create_model("resnet18", pretrained=True).fc.weight, sd["fc.weight"])
    bad = WeightsEntry("resnet18", base + "resnet18-00000000.pth", "00000000", pre)
    (root / "resnet18-00000000.pth").write_bytes(b"not the weights")
    with pytest.raises(CnnkitError, match="expected SHA-256 00000000"):
        weights_file(bad)
    assert not (cached.parent / "resnet18-00000000.pth").exists()


def test_models_without_weights_say_what_to_do() -> None:
    with pytest.raises(CnnkitError, match="expected a model with published weights .* found 'lenet5'"):
        create_model("lenet5", pretrained=True)
