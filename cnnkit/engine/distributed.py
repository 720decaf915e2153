"""DistributedDataParallel under ``torchrun``: gloo on CPU, nccl on GPU; rank 0 alone writes and logs.

``torchrun --nproc_per_node=N -m cnnkit train …`` sets RANK, LOCAL_RANK and WORLD_SIZE; without them
everything here is a no-op and training runs in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_type: str) -> Dist:
    """Join the process group torchrun describes (if any) and return this process's place in it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    if device_type == "cuda":
        torch.cuda.set_device(local)
    return Dist(rank, world, local)


def wrap(model: nn.Module, d: Dist, device: torch.device) -> nn.Module:
    """DDP-wrap ``model`` when distributed (gradients averaged across processes)."""
    if not d.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def shard(order: torch.Tensor, d: Dist) -> torch.Tensor:
    """This rank's share of an epoch's sample order (same length on every rank, as DistributedSampler does)."""
    if not d.enabled:
        return order
    n = len(order) // d.world * d.world
    return order[:n][d.rank :: d.world]


def teardown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
