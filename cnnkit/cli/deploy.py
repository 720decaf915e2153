"""``cnnkit export``, ``cnnkit bench`` and ``cnnkit serve``: hand a model over (ONNX), time it on this machine,
and serve it as a web page with a JSON API."""

from __future__ import annotations

import argparse
import json

from ..errors import CnnkitError


def _add_source(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("run", nargs="?", metavar="RUN", help=f"a run directory{what}")
    p.add_argument("--model", help="a registered model instead of a run")
    p.add_argument("--pretrained", action="store_true", help="the model's published ImageNet weights")
    p.add_argument("--weights", metavar="PATH", help="a local state dict (.safetensors/.pt/.pth) for --model")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a run or a model to ONNX, checked against PyTorch in ONNX Runtime")
    _add_source(p, "")
    p.add_argument("--format", default="onnx", choices=("onnx",), help="the file format (onnx)")
    p.add_argument("--out", metavar="FILE", help="where to write (default RUN/model.onnx, or NAME.onnx)")
    p.add_argument("--exporter", choices=("dynamo", "torchscript"), help="default: the task's choice, then the other")
    p.add_argument("--dynamic-size", action="store_true", help="a dynamic image height and width too (dynamo)")
    p.add_argument("--check", nargs="+", metavar="IMAGE", help="images to compare on (default: 2 sample photos)")
    p.set_defaults(func=run_export)

    p = sub.add_parser("bench", help="a table of models on this machine: size, MACs, ms per image per backend")
    p.add_argument("models", nargs="*", metavar="MODEL", help="registered models (default mobilenet_v2 lite0)")
    p.add_argument("--batch", default="1,32", help="comma-separated batch sizes (default 1,32)")
    p.add_argument("--backend", default="eager,folded,onnxruntime",
                   help="comma-separated: eager (the model as built), folded (BatchNorm folded and channels_last, as"
                   " predict runs it), onnxruntime (default: all three)")  # fmt: skip
    p.add_argument("--repeats", type=int, default=10, help="timed runs per cell; the median is shown (default 10)")
    p.add_argument("--no-train", action="store_true", help="skip the training images/s column")
    p.add_argument("--markdown", action="store_true", help="a Markdown table")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--plot", metavar="FILE", help="also plot ms per image against MACs (PNG)")
    p.set_defaults(func=run_bench)

    p = sub.add_parser("serve", help="a web page and JSON API for a run or a model (FastAPI + uvicorn)")
    _add_source(p, " or an exported .onnx file")
    p.add_argument("--backend", choices=("eager", "onnxruntime"), default="eager",
                   help="eager (with Grad-CAM overlays) or onnxruntime (faster, no overlay)")  # fmt: skip
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="larger uploads get 413 (default 10)")
    p.add_argument("--max-in-flight", type=int, default=4, help="more requests at once get 503 (default 4)")
    p.add_argument("--upload-timeout", type=float, default=60.0, metavar="S",
                   help="an upload not in within S seconds, or pausing over 10, gets 408 (default 60)")  # fmt: skip
    p.set_defaults(func=run_serve)


def _predictor(args: argparse.Namespace, backend: str = "eager", allow_random: bool = False, predicting: bool = False):
    from ..deploy import load_predictor

    return load_predictor(args.run, model=args.model, pretrained=args.pretrained, weights=args.weights,
                          backend=backend, allow_random=allow_random, predicting=predicting)  # fmt: skip


def run_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..deploy import export_onnx

    if args.run and args.run.endswith(".onnx"):
        raise CnnkitError(f"expected a run directory or --model, found the ONNX file {args.run!r}; it is exported")
    predictor = _predictor(args, allow_random=True)
    if args.model and not (args.pretrained or args.weights):
        print(f"note: {args.model} is freshly initialised (no --pretrained/--weights); fine for timing, not predicting")
    out = args.out or (str(Path(args.run) / "model.onnx") if args.run else f"{args.model}.onnx")
    result = export_onnx(predictor, out, exporter=args.exporter, dynamic_size=args.dynamic_size, images=args.check)
    print(result.describe())
    return 0


def _csv(text: str, what: str, cast=str) -> list:
    try:
        items = [cast(t.strip()) for t in text.split(",") if t.strip()]
    except ValueError:
        items = []
    if not items:
        raise CnnkitError(f"expected a comma-separated list of {what}, found {text!r}")
    return items


def run_bench(args: argparse.Namespace) -> int:
    from ..deploy.bench import DEFAULT_MODELS, bench_table, format_table, plot_table

    batches = _csv(args.batch, "batch sizes", int)
    if min(batches) < 1 or args.repeats < 1:
        raise CnnkitError(f"expected positive batch sizes and repeats, found {batches} and {args.repeats}")
    table = bench_table(args.models or list(DEFAULT_MODELS), batches, _csv(args.backend, "backends"),
                        repeats=args.repeats, train=not args.no_train)  # fmt: skip
    if args.json:
        print(json.dumps(table, indent=2))
    else:
        print(format_table(table, markdown=args.markdown))
    if args.plot:
        print(f"wrote {plot_table(table, args.plot)}")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from ..deploy.serve import serve

    for flag, value in (("--max-upload-mb", args.max_upload_mb), ("--max-in-flight", args.max_in_flight),
                        ("--upload-timeout", args.upload_timeout)):  # fmt: skip
        if not value > 0:
            raise CnnkitError(f"expected {flag} above 0, found {value:g}; with it no upload could be answered")
    predictor = _predictor(args, backend=args.backend, predicting=True)
    limits = {"max_bytes": int(args.max_upload_mb * 1e6), "max_in_flight": args.max_in_flight,
              "upload_s": args.upload_timeout}  # fmt: skip
    serve(predictor, args.host, args.port, **limits)
    return 0
