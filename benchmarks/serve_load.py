"""A bounded load test of ``cnnkit serve`` on loopback: requests/s, p50/p99 latency, and what happens under
overload (503s from the in-flight limit, never errors or hangs). The server is ``cnnkit serve`` itself, in its own
process as a user runs it (127.0.0.1, a free port): with ``--backend onnxruntime`` it serves the model exported by
``cnnkit export`` (freshly initialised weights unless ``--pretrained``: fine for timing), with ``eager`` the
PyTorch model (which needs ``--pretrained``). ``--clients`` threads post a real photo until ``--count`` requests or
``--seconds`` have passed, whichever comes first. Run it alone.

    python benchmarks/serve_load.py [--model mobilenet_v2] [--backend onnxruntime] [--clients 16] [--count 400]
"""

from __future__ import annotations

import argparse
import io
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image
from sklearn.datasets import load_sample_images

from cnnkit.deploy.bench import machine

CNNKIT = [sys.executable, "-m", "cnnkit"]


def start(args: argparse.Namespace, tmp: Path) -> tuple[subprocess.Popen, str]:
    """``cnnkit serve`` on a free loopback port, in its own process; (the process, the /predict URL)."""
    source = ["--model", args.model, *(["--pretrained"] if args.pretrained else [])]
    if args.backend == "onnxruntime":
        onnx = tmp / f"{args.model}.onnx"
        subprocess.run([*CNNKIT, "export", *source, "--out", str(onnx)], check=True, stdout=subprocess.DEVNULL)
        source = [str(onnx)]
    cmd = [*CNNKIT, "serve", *source, "--port", "0", "--max-in-flight", str(args.max_in_flight)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # "serving NAME at http://127.0.0.1:PORT/ …", printed once it is bound
    found = re.search(r"at (http://\S+/) ", line)
    if not found:
        proc.kill()
        raise SystemExit(f"cnnkit serve did not start: {line!r}")
    url = found.group(1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "health", timeout=1).status_code == 200:
                return proc, url + "predict"
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("cnnkit serve did not answer /health within 60 s")


def load(url: str, data: bytes, clients: int, count: int, seconds: float) -> tuple[Counter, list[float], float]:
    """(status counts, latencies of the 200s in s, wall time)."""
    statuses, latencies, lock = Counter(), [], threading.Lock()
    deadline, left = time.monotonic() + seconds, [count]

    def worker() -> None:
        with httpx.Client(timeout=30) as c:
            while time.monotonic() < deadline:
                with lock:
                    if left[0] <= 0:
                        return
                    left[0] -= 1
                t0 = time.perf_counter()
                try:
                    status = c.post(url, files={"file": ("flower.jpg", data, "image/jpeg")}).status_code
                except httpx.HTTPError as e:
                    status = type(e).__name__
                with lock:
                    statuses[status] += 1
                    if status == 200:
                        latencies.append(time.perf_counter() - t0)

    start_time = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for _ in range(clients):
            pool.submit(worker)
    return statuses, latencies, time.perf_counter() - start_time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--pretrained", action="store_true", help="the model's published weights (needed for eager)")
    ap.add_argument("--backend", default="onnxruntime", choices=("eager", "onnxruntime"))
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--count", type=int, default=400)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--max-in-flight", type=int, default=4)
    args = ap.parse_args()
    buf = io.BytesIO()
    Image.fromarray(load_sample_images().images[1]).save(buf, format="JPEG", quality=90)
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start(args, Path(tmp))
        try:
            for clients in (1, args.clients):  # one client: the unloaded latency; many: over the in-flight limit
                st, lat, wall = load(url, buf.getvalue(), clients, args.count, args.seconds)
                lat.sort()
                p50 = statistics.median(lat) * 1000 if lat else float("nan")
                p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1000 if lat else float("nan")
                print(f"{clients:>3} clients: {sum(st.values())} requests in {wall:.1f} s, {st[200] / wall:.1f}"
                      f" answered/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms; statuses {dict(st)}")  # fmt: skip
        finally:
            proc.send_signal(signal.SIGINT)  # as Ctrl+C: uvicorn shuts down cleanly
            proc.wait(10)
    print(f"{args.model}, {args.backend}, max in flight {args.max_in_flight}; {machine()}")


if __name__ == "__main__":
    main()
