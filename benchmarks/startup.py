"""Start-up time of the commands a learner types first: wall time of a fresh ``cnnkit`` process.

Each command runs ``--repeat`` times in a new Python process (as a user runs it); the median is printed with the
CPU. Goals (issue "Speed on every machine"): ``--version`` and ``--help`` under 0.3 s (they must load no torch),
``kernels`` and a small ``convolve --matrix`` under 2 s; one-photo ``predict`` with published weights, for scale
(no goal). Run it alone: other processes on the same cores inflate
every figure.

    python benchmarks/startup.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image
from sklearn.datasets import load_sample_images

from cnnkit.machine import cpu_name

COMMANDS = {
    "--version": ["--version"],
    "--help": ["--help"],
    "kernels": ["kernels"],
    "convolve --matrix (5×5 ⊗ 3×3)": [
        "convolve",
        "--matrix",
        "1 1 1 0 0; 0 1 1 1 0; 0 0 1 1 1; 0 0 1 1 0; 0 1 1 0 0",
        "--kernel",
        "1 0 1; 0 1 0; 1 0 1",
    ],
    "import torch (for scale)": None,
    "predict lite0, one photo": ["predict", "--model", "efficientnet_lite0", "--pretrained"],
}
GOALS = {"--version": 0.3, "--help": 0.3, "kernels": 2.0, "convolve --matrix (5×5 ⊗ 3×3)": 2.0}


def wall(args: list[str] | None) -> float:
    cmd = [sys.executable, "-c", "import torch"] if args is None else [sys.executable, "-m", "cnnkit", *args]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    print(f"CPU: {cpu_name()}; median of {args.repeat} fresh processes")
    photo = Path(tempfile.mkdtemp()) / "flower.jpg"  # scikit-learn's 640×427 sample photo
    Image.fromarray(load_sample_images().images[1]).save(photo)
    for name, cmd in COMMANDS.items():
        cmd = [*cmd, str(photo)] if cmd and cmd[0] == "predict" else cmd
        t = statistics.median(wall(cmd) for _ in range(args.repeat))
        goal = GOALS.get(name)
        verdict = "" if goal is None else f"  (goal < {goal:g} s: {'met' if t < goal else 'NOT met'})"
        print(f"  {name:<34} {t:6.2f} s{verdict}")


if __name__ == "__main__":
    main()
