"""What this machine offers (CPU name, usable cores) and the thread settings made for it before torch is first
imported (OpenMP reads them once, when it loads). Loads no torch.

PyTorch's CPU kernels run on GNU OpenMP. Its idle threads spin for a while before they sleep, which is free when
one process owns the cores and ruinous when two share them: each process's spinning threads take the cores the
other one needs (``benchmarks/thread_contention.py`` measures it). cnnkit therefore asks for a passive wait, and
for no more threads than the cores this process may really use (its CPU affinity and its cgroup quota, which
``os.cpu_count()`` ignores). A setting the user made in the environment always wins.
"""

from __future__ import annotations

import math
import os
import platform
import sys
from collections.abc import MutableMapping
from pathlib import Path


def _cpuinfo(key: str) -> str | None:
    """The value of the first ``key`` line of ``/proc/cpuinfo`` (None where there is none, e.g. not on Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith(key)), None)
    except OSError:
        return None


def cpu_name() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``platform``'s word for it elsewhere), for every figure."""
    return _cpuinfo("model name") or platform.processor() or platform.machine() or "unknown CPU"


def cpu_flags() -> set[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where there is none, e.g. not on Linux)."""
    return set((_cpuinfo("flags") or "").split())


def cgroup_cpu_quota(path: Path = Path("/sys/fs/cgroup/cpu.max")) -> int | None:
    """Whole CPUs allowed by a cgroup v2 quota (``"200000 100000"`` -> 2), or None when there is none."""
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(1, math.ceil(int(quota) / int(period)))
    except (ValueError, ZeroDivisionError):
        return None


def usable_cores() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_cpu_quota()
    return max(1, min(cores, quota) if quota else cores)


def configure_threads(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` and ``OMP_NUM_THREADS`` = usable cores where the user has not set them.

    Returns what was set. Does nothing once torch is imported (OpenMP has already read its environment then).
    """
    if "torch" in sys.modules:
        return {}
    wanted = {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": str(usable_cores())}
    chosen = {k: v for k, v in wanted.items() if k not in environ}
    environ.update(chosen)
    return chosen
