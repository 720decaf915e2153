"""Where and how tensors run: device, precision, batching, the uint8 -> normalised float step, and the folded
copy of a model that inference runs (:func:`inference_copy`)."""

from __future__ import annotations

import contextlib
import copy
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torch.utils.data import DataLoader, Dataset, Subset

from .errors import CnnkitError
from .machine import cpu_flags

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` (a CUDA GPU when there is one, else the CPU), ``cpu``, ``cuda`` or ``cuda:N`` -> the device.

    Raises:
        CnnkitError: another name, or a CUDA device asked for on a machine without one.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise CnnkitError(f"expected device auto, cpu or cuda, found {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CnnkitError(
            f"expected a CUDA device for {name!r}, found none; use --device cpu (to train: --set train.device=cpu)"
        )
    return torch.device(name)


def cpu_has_bf16() -> bool:
    """True on CPUs with native bf16 instructions (AVX-512 BF16 or AMX-BF16), where bf16 autocast is faster.

    oneDNN's own check (``torch.ops.mkldnn._is_mkldnn_bf16_supported``) is also true on AVX-512 CPUs that only
    emulate bf16, where autocast measured 17× slower than fp32; the CPU's flags tell the two apart.
    """
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def choose_precision(precision: str, device: torch.device) -> tuple[torch.dtype | None, str]:
    """(autocast dtype or None for fp32, the reason in words) for ``precision`` on ``device``."""
    dtype = resolve_precision(precision, device)
    if precision != "auto":
        return dtype, f"train.precision={precision}"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return (
            dtype,
            f"auto: {name} {'has native bf16' if dtype == torch.bfloat16 else 'lacks native bf16: fp16 + GradScaler'}",
        )
    why = "native bf16 (avx512_bf16/amx_bf16)" if dtype is not None else "no native bf16 on this CPU"
    return dtype, f"auto: {why}"


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; ``None`` means plain fp32."""
    if precision not in PRECISIONS:
        raise CnnkitError(f"expected precision one of {', '.join(PRECISIONS)}, found {precision!r}")
    if precision == "fp32":
        return None
    if precision in ("bf16", "fp16"):
        return torch.bfloat16 if precision == "bf16" else torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if cuda_has_bf16(device) else torch.float16
    return torch.bfloat16 if cpu_has_bf16() else None


def cuda_has_bf16(device: torch.device) -> bool:
    """Native bf16 tensor cores: compute capability 8.0 (Ampere) or newer. ``torch.cuda.is_bf16_supported()`` is
    also true where bf16 is only emulated (V100, T4), which is slower than fp16 with a GradScaler there."""
    return torch.cuda.get_device_capability(device) >= (8, 0)


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def inference_copy(model: nn.Module, example: Tensor) -> nn.Module:
    """A copy of ``model`` in eval mode that gives its outputs (to float rounding) in less time: each BatchNorm2d
    that only ever normalises one Conv2d's output folded into that conv's weights and bias (and replaced by
    ``nn.Identity``), and the weights in channels_last (feed it channels_last inputs). ``model`` itself is left as it
    is: ``explain`` and ``export`` show its layers as trained. Measured on the 2-core AMD EPYC (AVX2,
    ``cnnkit bench --backend eager,folded``, ``benchmarks/predict_latency.py``): smallcnn at batch 1 ~1.5× and
    MobileNetV2 1.4–1.7× faster than the model as built.

    Args:
        example: an input Tensor[B, C, H, W] the model accepts; one forward pass on it finds the pairs
            (:func:`conv_bn_pairs`).
    """
    fast = copy.deepcopy(model).eval()
    for conv_name, bn_name in conv_bn_pairs(fast, example):
        conv, bn = fast.get_submodule(conv_name), fast.get_submodule(bn_name)
        fast.set_submodule(conv_name, fuse_conv_bn_eval(conv, bn))
        fast.set_submodule(bn_name, nn.Identity())
    return fast.to(memory_format=torch.channels_last)


def conv_bn_pairs(model: nn.Module, example: Tensor) -> list[tuple[str, str]]:
    """(conv, BatchNorm) module names where, in one eval-mode forward pass on ``example``, the BatchNorm2d (with
    running statistics) took the Conv2d's output and nothing else used that output (read from the autograd graph,
    so attribute order, shared modules and skip connections cannot mislead it), each module called once, and the
    conv one whose forward applies its weight and bias as they are (:func:`_foldable`). Not seen: a use of the
    conv's output that leaves the graph (``.detach()``, a comparison); no zoo model has one."""
    calls: dict[str, int] = {}
    conv_of: dict[Any, str] = {}  # grad_fn of a conv's output -> the conv's name
    bn_input: dict[str, Any] = {}  # BatchNorm name -> grad_fn of its input

    def on_conv(name: str) -> Callable:
        def hook(_m: nn.Module, _inp: Any, out: Any) -> None:
            calls[name] = calls.get(name, 0) + 1
            if isinstance(out, Tensor) and out.grad_fn is not None:
                conv_of[out.grad_fn] = name

        return hook

    def on_bn(name: str) -> Callable:
        def hook(_m: nn.Module, inp: Any, _out: Any) -> None:
            calls[name] = calls.get(name, 0) + 1
            bn_input[name] = inp[0].grad_fn

        return hook

    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(on_conv(name)))
        elif isinstance(m, nn.BatchNorm2d) and m.running_mean is not None:
            hooks.append(m.register_forward_hook(on_bn(name)))
    was = model.training
    try:
        with torch.enable_grad():
            outputs = model.eval()(example.detach().requires_grad_())
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    uses = _uses(outputs)
    return [
        (conv_of[fn], bn)
        for bn, fn in bn_input.items()
        if fn in conv_of and uses.get(fn) == 1 and calls[bn] == 1 and calls[conv_of[fn]] == 1
        and _foldable(model.get_submodule(conv_of[fn]))
    ]  # fmt: skip


def _foldable(conv: nn.Module) -> bool:
    """A conv whose output is its weight and bias applied as they are: nn.Conv2d's own forward, or a subclass that
    says so (``folds_batchnorm``; a weight-standardising conv would undo a fold); no parametrised weight."""
    from torch.nn.utils import parametrize

    own = type(conv).forward is nn.Conv2d.forward or getattr(conv, "folds_batchnorm", False)
    return bool(own) and not parametrize.is_parametrized(conv)


def _uses(outputs: Any) -> dict[Any, int]:
    """How many edges of the autograd graph behind ``outputs`` (tensors, or tuples, lists or dicts of them) lead
    into each node: a conv's output used by its BatchNorm alone has one."""
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    tensors = outputs if isinstance(outputs, (tuple, list)) else [outputs]
    roots = [t.grad_fn for t in tensors if isinstance(t, Tensor) and t.grad_fn is not None]
    uses: dict[Any, int] = {}
    seen, stack = set(roots), list(roots)
    while stack:
        for nxt, _ in stack.pop().next_functions:
            if nxt is None:
                continue
            uses[nxt] = uses.get(nxt, 0) + 1
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return uses


class Normalize:
    """uint8 ``Tensor[N, C, H, W]`` -> float ``(x / 255 − mean) / std`` on ``device`` (channels_last if asked)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: torch.device, channels_last: bool) -> None:
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255
        self.scale = 1 / (torch.tensor(std, device=device).view(1, -1, 1, 1) * 255)
        self.device, self.channels_last = device, channels_last

    def __call__(self, x: Tensor) -> Tensor:
        x = (x.to(self.device, non_blocking=True).float() - self.mean) * self.scale
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def batches(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    skip: int = 0,
    shard: Callable[[Tensor], Tensor] | None = None,
    order: Tensor | None = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield (uint8 images Tensor[B, C, H, W], targets) in an order fixed by ``seed``; targets are int64 labels
    Tensor[B] for classification, whatever the dataset's ``take`` returns for other tasks.

    Args:
        shuffle: a fresh permutation from ``seed`` (not from the global RNG, so resuming can replay it).
        skip: leave out the first ``skip`` batches (resuming inside an epoch).
        shard: picks this process's share of the order (distributed training).
        order: the example order to use instead of a permutation (a task's own sampling, e.g. P identities ×
            K images per batch); int64 Tensor[M], batches are consecutive runs of ``batch_size``.

    In-memory datasets are sliced directly (no per-item Python overhead); others go through a DataLoader.
    """
    g = torch.Generator().manual_seed(seed)
    if order is None:
        order = torch.randperm(len(dataset), generator=g) if shuffle else torch.arange(len(dataset))
    if shard is not None:
        order = shard(order)
    order = order[skip * batch_size :]
    if hasattr(dataset, "take"):  # in memory (TensorImages, BoxImages): sliced, no per-item overhead
        for idx in order.split(batch_size):
            yield dataset.take(idx)
        return
    loader = DataLoader(
        Subset(dataset, order.tolist()),
        batch_size=batch_size,
        num_workers=num_workers,
        worker_init_fn=None,
        generator=torch.Generator().manual_seed(seed),
    )
    for x, y in loader:
        yield x, torch.as_tensor(y)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
