"""A bounded load test of ``cnnkit serve`` on loopback: requests/s, p50/p99 latency, and what happens under
overload (503s from the in-flight limit, never errors or hangs). The server (uvicorn in a thread, 127.0.0.1, a
free port) serves one model; ``--clients`` threads post a real photo until ``--count`` requests or ``--seconds``
have passed, whichever comes first. Run it alone.

    python benchmarks/serve_load.py [--model mobilenet_v2] [--backend onnxruntime] [--clients 16] [--count 400]
"""

from __future__ import annotations

import argparse
import io
import socket
import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import uvicorn
from PIL import Image
from sklearn.datasets import load_sample_images

from cnnkit.deploy.bench import machine
from cnnkit.deploy.loading import load_predictor
from cnnkit.deploy.serve import create_app


def start(app) -> tuple[uvicorn.Server, threading.Thread, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(app, log_level="error"))
    t = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    t.start()
    while not srv.started:
        time.sleep(0.05)
    return srv, t, f"http://127.0.0.1:{sock.getsockname()[1]}/predict"


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
    ap.add_argument("--backend", default="onnxruntime", choices=("eager", "onnxruntime"))
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--count", type=int, default=400)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--max-in-flight", type=int, default=4)
    args = ap.parse_args()
    pred = load_predictor(model=args.model, backend=args.backend, allow_random=True, log=lambda s: None)
    buf = io.BytesIO()
    Image.fromarray(load_sample_images().images[1]).save(buf, format="JPEG", quality=90)
    srv, thread, url = start(create_app(pred, max_in_flight=args.max_in_flight, backend=args.backend))
    try:
        for clients in (1, args.clients):  # one client: the unloaded latency; many: over the in-flight limit
            st, lat, wall = load(url, buf.getvalue(), clients, args.count, args.seconds)
            lat.sort()
            p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1000 if lat else float("nan")
            print(f"{clients:>3} clients: {sum(st.values())} requests in {wall:.1f} s, {st[200] / wall:.1f} answered/s,"
                  f" p50 {statistics.median(lat) * 1000 if lat else float('nan'):.1f} ms, p99 {p99:.1f} ms;"
                  f" statuses {dict(st)}")  # fmt: skip
    finally:
        srv.should_exit = True
        thread.join(10)
    print(f"{args.model}, {args.backend}, max in flight {args.max_in_flight}; {machine()}")


if __name__ == "__main__":
    main()
