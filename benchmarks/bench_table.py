"""The deploy issue's acceptance figures: ONNX Runtime vs PyTorch eager at batch 1 for MobileNetV2 and
EfficientNet-Lite0 (ratio measured in the same run; beside them the folded eager copy that ``cnnkit predict``
runs), and cnnkit's own per-request overhead (decode, preprocess, postprocess) against the model time, on a real
photo through the served path (bytes in, top-5 out). Then the `cnnkit bench` table. Run it alone (another PyTorch
process on the same cores distorts every figure).

    python benchmarks/bench_table.py [--repeats 20] [--markdown]
"""

from __future__ import annotations

import argparse
import io

import torch
from PIL import Image
from sklearn.datasets import load_sample_images

from cnnkit.deploy.bench import DEFAULT_MODELS, bench_table, format_table, machine, median_seconds
from cnnkit.deploy.loading import load_predictor
from cnnkit.deploy.serve import decode_upload, upload_side


def overhead(name: str, repeats: int) -> dict[str, float]:
    """Median ms per stage of one request through the ONNX Runtime predictor of ``name`` (batch 1)."""
    pred = load_predictor(model=name, pretrained=name == "efficientnet_lite0", backend="onnxruntime",
                          allow_random=True, log=lambda s: None)  # fmt: skip
    buf = io.BytesIO()
    Image.fromarray(load_sample_images().images[1]).save(buf, format="JPEG", quality=90)  # 640×427 flower.jpg
    data, side = buf.getvalue(), upload_side(pred)
    image = decode_upload(data, side)
    x = pred.normalize(pred.to_tensor(image)[None])
    logits = pred.model(x)
    stages = {
        "decode": lambda: decode_upload(data, side),
        "preprocess": lambda: pred.normalize(pred.to_tensor(image)[None]),
        "model": lambda: pred.model(x),
        "postprocess": lambda: torch.softmax(logits.float(), 1).topk(5),
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as `cnnkit serve --backend onnxruntime` runs: torch only preprocesses, ORT has its pool
    try:
        return {k: median_seconds(f, repeats, warmup=3) * 1000 for k, f in stages.items()}
    finally:
        torch.set_num_threads(threads)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    print(machine())
    for name in DEFAULT_MODELS:
        t = overhead(name, args.repeats)
        own = t["decode"] + t["preprocess"] + t["postprocess"]
        print(f"{name}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in t.items())
              + f"; cnnkit's own overhead {own:.2f} ms = {own / t['model']:.0%} of the model time")  # fmt: skip
    table = bench_table(list(DEFAULT_MODELS), [1, 32], ["eager", "folded", "onnxruntime"], repeats=args.repeats)
    for r in table["rows"]:
        ratio = r["ms_per_image"]["eager@1"] / r["ms_per_image"]["onnxruntime@1"]
        ms = r["ms_per_image"]
        print(f"{r['model']}: batch 1 ONNX Runtime {ratio:.2f}× faster than eager ({ms['eager@1']:.1f} vs"
              f" {ms['onnxruntime@1']:.1f} ms); folded eager, as cnnkit predict runs it,"
              f" {ms['folded@1']:.1f} ms")  # fmt: skip
    print(format_table(table, markdown=args.markdown))


if __name__ == "__main__":
    main()
