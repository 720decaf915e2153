"""What this machine offers (CPU name, usable cores) and the thread settings made for it before torch is first
imported (OpenMP reads them once, when it loads). Loads no torch.

PyTorch's CPU kernels run on GNU OpenMP. Its idle threads spin for a while before they sleep, which is free when
one process owns the cores and ruinous when two share them: each process's spinning threads take the cores the
other one needs (``benchmarks/thread_contention.py`` measures it). A training (long, throughput-bound, often beside
another job) therefore asks for a passive wait. Waking sleeping threads costs at every parallel region, though, and
a model run on one image is little else: ``benchmarks/thread_contention.py --latency`` measured batch-1 smallcnn at
5.9–10.1 ms passive against 3.0 ms spinning, MobileNetV2 at 78–100 against 36 ms (2-core AMD EPYC). Every other
command (short, and often one image at a time) spins briefly instead (``GOMP_SPINCOUNT=10000``: 2.65 and 38 ms
there, then asleep). Every command uses no more threads than the cores this process may really use (its CPU
affinity and its cgroup quota, which ``os.cpu_count()`` ignores). A setting the user made in the environment always
wins.
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


TRAINING_COMMANDS = frozenset({"train"})  # the ones that wait passively; the rest spin briefly
SHORT_SPIN = "10000"  # GOMP_SPINCOUNT of the other commands


def thread_settings(command: str | None) -> dict[str, str]:
    """The environment cnnkit wants for ``command`` (a ``cnnkit`` subcommand; None: a training's)."""
    wait = {"OMP_WAIT_POLICY": "PASSIVE"} if command in TRAINING_COMMANDS or command is None else {}
    return (wait or {"GOMP_SPINCOUNT": SHORT_SPIN}) | {"OMP_NUM_THREADS": str(usable_cores())}


def configure_threads(environ: MutableMapping[str, str] = os.environ, command: str | None = None) -> dict[str, str]:
    """Set :func:`thread_settings` of ``command`` where the user has not set them: a passive wait for a training, a
    short spin (``GOMP_SPINCOUNT``) for the rest, ``OMP_NUM_THREADS`` = usable cores. A wait policy or spin count of
    the user's own keeps both of cnnkit's wait settings out.

    Returns what was set. Does nothing once torch is imported (OpenMP has already read its environment then).
    """
    if "torch" in sys.modules:
        return {}
    wanted = thread_settings(command)
    if "OMP_WAIT_POLICY" in environ or "GOMP_SPINCOUNT" in environ:
        wanted = {k: v for k, v in wanted.items() if k == "OMP_NUM_THREADS"}
    chosen = {k: v for k, v in wanted.items() if k not in environ}
    environ.update(chosen)
    return chosen
