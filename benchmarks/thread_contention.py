"""Thread contention: training throughput of one cnnkit process alone and of two side by side, per thread setting.

Each worker is a fresh Python process that trains ``smallcnn`` on random 28×28 batches (batch 128, SGD) for a fixed
wall time and prints its images/s. For every setting the script runs one worker alone, then two at once on the same
cores, so the table shows what a user running two jobs (or a test suite beside a training) gets:

- ``default``: PyTorch's own choice (one OpenMP thread per core; GNU OpenMP threads spin while they wait);
- ``passive``: ``OMP_WAIT_POLICY=PASSIVE`` — idle OpenMP threads sleep instead of spinning;
- ``spin 10k``/``spin 100k``: ``GOMP_SPINCOUNT`` — spin that many times, then sleep (GNU OpenMP's default is 300k);
- ``cnnkit train``: what ``cnnkit.machine.configure_threads`` sets for ``cnnkit train`` (threads = cores this
  process may use, passive wait);
- ``cnnkit predict``: what it sets for every other command (threads = usable cores, ``GOMP_SPINCOUNT=10000``);
- ``1 thread``: ``torch.set_num_threads(1)``.

``--latency`` prints a second table: the median batch-1 latency per setting of smallcnn (1×28×28) and MobileNetV2
(3×224×224) in eval mode, with a 1 ms pause before each call (a request arriving at a server, a user's next image),
which is what waking sleeping threads costs.

Usage: ``python benchmarks/thread_contention.py [--seconds 12] [--latency]``. Time it alone on the machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from cnnkit.machine import cpu_name

WORKER = r"""
import os, sys, time
setting = sys.argv[1]
if setting.startswith("cnnkit "):
    from cnnkit.machine import configure_threads
    configure_threads(command=setting.split()[1])
import torch
import torch.nn.functional as F
if setting == "1 thread":
    torch.set_num_threads(1)
from cnnkit.machine import cpu_name
from cnnkit.models import create_model
torch.manual_seed(0)
if len(sys.argv) > 3:  # latency: CALLS MODEL SIZE (argv[2] is a number of calls here, not seconds)
    import statistics
    size = int(sys.argv[4])
    chans = 1 if size == 28 else 3
    model = create_model(sys.argv[3], num_classes=10, in_chans=chans).eval()
    x, times = torch.randn(1, chans, size, size), []
    with torch.no_grad():
        for i in range(int(sys.argv[2]) + 5):
            time.sleep(0.001)
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    print(statistics.median(times[5:]) * 1000, torch.get_num_threads())
    sys.exit()
model = create_model("smallcnn", num_classes=10, in_chans=1)
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
def step():
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
for _ in range(3):
    step()
seen, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < float(sys.argv[2]):
    step()
    seen += len(y)
print(seen / (time.perf_counter() - t0), torch.get_num_threads())
"""

SETTINGS: dict[str, dict[str, str]] = {
    "default": {},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "spin 10k": {"GOMP_SPINCOUNT": "10000"},
    "spin 100k": {"GOMP_SPINCOUNT": "100000"},
    "cnnkit train": {},
    "cnnkit predict": {},
    "1 thread": {},
}


def run(setting: str, copies: int, seconds: float, *latency: str) -> list[tuple[float, int]]:
    """Start ``copies`` workers at once -> [(images/s, torch threads)] of each; with ``latency`` (MODEL, SIZE) one
    worker's [(median ms of batch-1 calls, torch threads)], ``seconds`` then being the number of calls."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT")}
    env.update(SETTINGS[setting])
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, setting, str(seconds), *latency], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(copies)
    ]
    out = []
    for p in procs:
        rate, threads = p.communicate()[0].split()
        out.append((float(rate), int(threads)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=12.0)
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--latency", action="store_true", help="also batch-1 latency per setting")
    args = p.parse_args()
    print(f"{cpu_name()}, {len(os.sched_getaffinity(0))} usable cores, load {os.getloadavg()[0]:.2f}")
    print("| setting | threads | alone img/s | two at once, img/s each | two: total / alone |")
    print("|---|---|---|---|---|")
    for setting in args.settings:
        [(alone, threads)] = run(setting, 1, args.seconds)
        pair = run(setting, 2, args.seconds)
        total = sum(r for r, _ in pair)
        each = " + ".join(f"{r:.0f}" for r, _ in pair)
        print(f"| {setting} | {threads} | {alone:.0f} | {each} | {total / alone:.2f} |", flush=True)
    if args.latency:
        print("\n| setting | threads | smallcnn 1×28×28 ms | mobilenet_v2 3×224×224 ms |\n|---|---|---|---|")
        for setting in args.settings:
            [(small, threads)] = run(setting, 1, 200, "smallcnn", "28")
            [(mobile, _)] = run(setting, 1, 30, "mobilenet_v2", "224")
            print(f"| {setting} | {threads} | {small:.2f} | {mobile:.1f} |", flush=True)


if __name__ == "__main__":
    main()
