"""FaceNet NN1 and NN2 against the notes' tables (seed 003, the tables titled "Zeiler-Fergus (ZF)" and
"GoogLeNet", which are FaceNet's Tables 1 and 2). The expected sizes and parameter counts below are copied from
those tables; "within rounding" means within one unit of the table's last digit (9K: ±1K, 1.6M: ±0.1M)."""

from __future__ import annotations

import pytest
import torch

from cnnkit.errors import CnnkitError
from cnnkit.explain.summary import summarize
from cnnkit.models import create_model

K, M = 1_000, 1_000_000

# seed 003, "Zeiler-Fergus (ZF)": layer, size-out (h, w, d), params (value, unit of its last digit)
NN1_TABLE = [
    ("conv1", (110, 110, 64), (9 * K, K)), ("pool1", (55, 55, 64), (0, 1)), ("rnorm1", (55, 55, 64), (0, 1)),
    ("conv2a", (55, 55, 64), (4 * K, K)), ("conv2", (55, 55, 192), (111 * K, K)),
    ("rnorm2", (55, 55, 192), (0, 1)), ("pool2", (28, 28, 192), (0, 1)),
    ("conv3a", (28, 28, 192), (37 * K, K)), ("conv3", (28, 28, 384), (664 * K, K)), ("pool3", (14, 14, 384), (0, 1)),
    ("conv4a", (14, 14, 384), (148 * K, K)), ("conv4", (14, 14, 256), (885 * K, K)),
    ("conv5a", (14, 14, 256), (66 * K, K)), ("conv5", (14, 14, 256), (590 * K, K)),
    ("conv6a", (14, 14, 256), (66 * K, K)), ("conv6", (14, 14, 256), (590 * K, K)),
    ("pool4", (7, 7, 256), (0, 1)), ("concat", (7, 7, 256), (0, 1)),
    ("fc1", (1, 32, 128), (103 * M, M)), ("fc2", (1, 32, 128), (34 * M, M)), ("fc7128", (1, 1, 128), (524 * K, K)),
    ("l2", (1, 1, 128), (0, 1)),
]  # fmt: skip
NN1_TOTAL, NN1_MACS = (140 * M, M), (1.6e9, 0.1e9)  # "total 140M 1.6B" (the FLPS column counts multiply-adds)

# seed 003, "GoogLeNet" (FaceNet NN2): type, output size (h, w, d), params
NN2_TABLE = [
    ("conv1", (112, 112, 64), (9 * K, K)), ("norm1", (56, 56, 64), (0, 1)),  # max pool + norm
    ("inception2", (56, 56, 192), (115 * K, K)), ("pool2", (28, 28, 192), (0, 1)),  # norm + max pool
    ("inception3a", (28, 28, 256), (164 * K, K)), ("inception3b", (28, 28, 320), (228 * K, K)),
    ("inception3c", (14, 14, 640), (398 * K, K)), ("inception4a", (14, 14, 640), (545 * K, K)),
    ("inception4b", (14, 14, 640), (595 * K, K)), ("inception4c", (14, 14, 640), (654 * K, K)),
    ("inception4d", (14, 14, 640), (722 * K, K)), ("inception4e", (7, 7, 1024), (717 * K, K)),
    ("inception5a", (7, 7, 1024), (1.6 * M, 0.1 * M)), ("inception5b", (7, 7, 1024), (1.6 * M, 0.1 * M)),
    ("avgpool", (1, 1, 1024), (0, 1)), ("fc128", (1, 1, 128), (131 * K, K)), ("l2", (1, 1, 128), (0, 1)),
]  # fmt: skip
NN2_TOTAL, NN2_MACS = (7.5 * M, 0.1 * M), (1.6e9, 0.1e9)


def rows_by_table_name(name: str) -> dict[str, tuple[tuple[int, ...], int]]:
    """``cnnkit explain``'s rows, merged per table row: (output shape of the row's module, its parameters).
    A table row that is one layer (conv1) is one explain row; an inception module's layers are summed."""
    with torch.device("meta"):
        model = create_model(name)
    summary = summarize(model)
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = []
    for full, module in model.named_modules():
        leaf = full.rsplit(".", 1)[-1]
        if full.count(".") == 1:
            hooks.append(module.register_forward_hook(lambda m, i, o, n=leaf: shapes.__setitem__(n, tuple(o.shape))))
    with torch.device("meta"):
        model(torch.empty(1, *model.default_input))
    for h in hooks:
        h.remove()
    params = {n: sum(r.params for r in summary.rows if r.name.split(".")[1:2] == [n]) for n in shapes}
    return {n: (shapes[n][1:], params[n]) for n in shapes}, summary


def as_hwd(shape: tuple[int, ...]) -> tuple[int, int, int]:
    return (shape[1], shape[2], shape[0]) if len(shape) == 3 else (1, 1, shape[0])


@pytest.mark.parametrize(("name", "table", "total", "macs"),
                         [("facenet_nn1", NN1_TABLE, NN1_TOTAL, NN1_MACS),
                          ("facenet_nn2", NN2_TABLE, NN2_TOTAL, NN2_MACS)])  # fmt: skip
def test_explain_reproduces_the_table(name, table, total, macs) -> None:
    rows, summary = rows_by_table_name(name)
    for layer, size, (params, unit) in table:
        shape, count = rows[layer]
        h, w, d = size
        if len(shape) == 1:  # flat rows: the table writes 4096 as 1×32×128 and 128 as 1×1×128
            assert shape == (h * w * d,), layer
        else:
            assert as_hwd(shape) == size, layer
        assert abs(count - params) <= unit, f"{layer}: {count:,} parameters, the table {params:,}"
    assert abs(summary.params - total[0]) <= total[1]
    assert abs(summary.macs - macs[0]) <= macs[1]
    assert summary.output == (128,)


@torch.no_grad()
def test_embedding_is_l2_normalised_and_nn1_needs_220() -> None:
    torch.manual_seed(0)
    model = create_model("facenet_nn2").eval()
    emb = model(torch.randn(2, 3, 96, 96))
    assert emb.shape == (2, 128)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))
    with torch.device("meta"):
        nn1 = create_model("facenet_nn1")
        with pytest.raises(CnnkitError, match="needs 3×220×220"):
            nn1(torch.empty(1, 3, 224, 224))
