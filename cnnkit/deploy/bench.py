"""``cnnkit bench``: a table of models on this machine in the style of the Keras Applications page: parameters,
MACs, size, published top-1 where the weights table knows it, milliseconds per image for each backend and batch
size, and training images/s. Each cell warms up, then reports the median of ``repeats`` timed runs, the backends
timed in turn so that their ratio survives a busy machine; the table says which CPU, how many threads and which
library versions it measured."""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CnnkitError
from ..machine import cpu_name
from ..runtime import inference_copy
from .onnx_backend import BACKENDS, session

DEFAULT_MODELS = ("mobilenet_v2", "efficientnet_lite0")
BENCH_BACKENDS = (*BACKENDS, "folded")  # folded: PyTorch eager on the inference copy ``cnnkit predict`` runs


def machine() -> dict[str, Any]:
    """What the timings were measured on."""
    import onnxruntime

    return {"cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__}  # fmt: skip


def median_seconds(fn: Callable[[], Any], repeats: int, warmup: int = 2) -> float:
    """The median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def published_top1(name: str) -> float | None:
    """ImageNet top-1 (%) of the default published weights, from torchvision's weights metadata; None where
    cnnkit's weights table carries no figure (never a guess)."""
    from ..models.pretrained import TORCHVISION_ZOO

    if name not in TORCHVISION_ZOO:
        return None
    from torchvision.models import get_model_weights

    return get_model_weights(name).DEFAULT.meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")


def runner(model: nn.Module, backend: str, x: torch.Tensor) -> Callable[[], Any]:
    """A call of ``model`` on inputs ``x`` Tensor[B, C, H, W] on ``backend``: "eager" (PyTorch on the model as
    built), "folded" (PyTorch on its :func:`~cnnkit.runtime.inference_copy`, as ``cnnkit predict`` and ``serve``
    run it) or "onnxruntime" (exported first)."""
    if backend == "folded":
        return runner(inference_copy(model, x[:1]), "eager", x.contiguous(memory_format=torch.channels_last))
    if backend == "eager":

        def eager() -> Any:
            with torch.no_grad():
                return model(x)

        return eager
    from .export import export_proto
    from .specs import SPECS

    sess = session(export_proto(model, x[:2], SPECS["classify"], "torchscript").SerializeToString(),
                   threads=torch.get_num_threads())  # fmt: skip
    feed = {sess.get_inputs()[0].name: x.numpy()}
    return lambda: sess.run(None, feed)


def interleaved_medians(
    fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 2, block: int = 5
) -> dict[str, float]:
    """Median seconds of each function over ``repeats`` calls, timed in turns of ``block`` calls (a×5, b×5, a×5, …)
    so that a busy machine slows all alike and the ratios between them hold. The first call of a turn can find the
    other runtime's threads still spinning on the cores (ONNX Runtime's and OpenMP's both do after a call); one
    call in ``block`` is too few to move the median."""
    for f in fns.values():
        for _ in range(warmup):
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    while min(len(v) for v in times.values()) < repeats:
        for k, f in fns.items():
            for _ in range(min(block, repeats - len(times[k]))):
                start = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def time_backends(model: nn.Module, backends: Sequence[str], shape: tuple[int, ...], batches: Sequence[int],
                  repeats: int) -> dict[str, float]:  # fmt: skip
    """Milliseconds per image, keyed ``backend@batch``, the backends interleaved at each batch size."""
    out = {}
    for n in batches:
        x = torch.randn(n, *shape)
        med = interleaved_medians({b: runner(model, b, x) for b in backends}, repeats)
        out |= {f"{b}@{n}": med[b] * 1000 / n for b in backends}
    return {f"{b}@{n}": out[f"{b}@{n}"] for b in backends for n in batches}


def train_images_per_second(model: nn.Module, shape: tuple[int, ...], batch: int = 16, repeats: int = 3) -> float:
    """Training throughput: SGD steps (forward, cross-entropy, backward, update) on random Tensor[batch, *shape]."""
    x, y = torch.randn(batch, *shape), torch.randint(0, model.num_classes, (batch,))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    seconds = median_seconds(step, repeats, warmup=1)
    model.eval()
    return batch / seconds


def bench_model(name: str, batches: Sequence[int], backends: Sequence[str], repeats: int, train: bool) -> dict:
    """One row of the table for the registered model ``name`` (freshly initialised: speed needs no weights)."""
    from ..explain import summarize
    from ..models import create_model

    model = create_model(name).eval()
    shape = tuple(model.default_input)
    row: dict[str, Any] = {"model": name, "input": list(shape), "params": sum(p.numel() for p in model.parameters())}
    row["macs"] = summarize(model).macs
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    row["size_mb"] = buf.tell() / 1e6
    row["top1"] = published_top1(name)
    row["ms_per_image"] = time_backends(model, backends, shape, batches, repeats)
    row["train_images_per_s"] = train_images_per_second(model, shape) if train else None
    return row


def bench_table(
    models: Sequence[str], batches: Sequence[int], backends: Sequence[str], repeats: int = 10, train: bool = True
) -> dict[str, Any]:
    """The whole table: ``{"machine": …, "batches", "backends", "rows": [one dict per model]}``."""
    from ..models import list_models

    unknown = [b for b in backends if b not in BENCH_BACKENDS]
    if unknown:
        raise CnnkitError(f"expected backends among {', '.join(BENCH_BACKENDS)}, found {', '.join(unknown)}")
    missing = [m for m in models if m not in list_models()]
    if missing:
        raise CnnkitError(f"expected registered models, found {', '.join(missing)}; see `cnnkit models`")
    rows = [bench_model(m, batches, backends, repeats, train) for m in models]
    return {"machine": machine(), "batches": list(batches), "backends": list(backends), "repeats": repeats,
            "rows": rows}  # fmt: skip


def format_table(table: dict[str, Any], markdown: bool = False) -> str:
    """The table as aligned text or Markdown, with the machine line under it."""
    from ..evaluate.tables import text_table

    cells = [f"{b}@{n}" for b in table["backends"] for n in table["batches"]]
    head = ["model", "params", "MACs", "size (MB)", "top-1 %", *[f"ms/img {c.replace('@', ' b')}" for c in cells],
            "train img/s"]  # fmt: skip
    rows = []
    for r in table["rows"]:
        top1 = f"{r['top1']:.1f}" if r["top1"] is not None else "—"
        train = f"{r['train_images_per_s']:.1f}" if r["train_images_per_s"] is not None else "—"
        rows.append([r["model"], f"{r['params'] / 1e6:.2f} M", f"{r['macs'] / 1e9:.2f} G", f"{r['size_mb']:.1f}", top1,
                     *[f"{r['ms_per_image'][c]:.2f}" for c in cells], train])  # fmt: skip
    m = table["machine"]
    note = (f"{m['cpu']}, {m['threads']} threads; torch {m['torch']}, onnxruntime {m['onnxruntime']}; median of"
            f" {table['repeats']} runs after warm-up; models freshly initialised (speed needs no weights)")  # fmt: skip
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join([*lines, "", f"Measured on {note}."])
    return f"{text_table((head, rows))}\n{note}"


def plot_table(table: dict[str, Any], path: str | Path) -> Path:
    """ms per image at the smallest batch against MACs, one marker per model and backend (PNG)."""
    from matplotlib.figure import Figure

    from ..io import save_figure

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    n = min(table["batches"])
    for backend, marker in zip(table["backends"], "os^"):
        xs = [r["macs"] / 1e9 for r in table["rows"]]
        ys = [r["ms_per_image"][f"{backend}@{n}"] for r in table["rows"]]
        ax.scatter(xs, ys, marker=marker, label=backend)
        for r, x, y in zip(table["rows"], xs, ys):
            ax.annotate(r["model"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("GMACs per image")
    ax.set_ylabel(f"ms per image at batch {n}")
    ax.set_title(f"{table['machine']['cpu']}, {table['machine']['threads']} threads", fontsize=9)
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)
