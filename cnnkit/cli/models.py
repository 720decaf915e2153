"""``cnnkit models [PATTERN] [--json]``: the registered models with their parameter counts."""

from __future__ import annotations

import argparse
import json


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list registered models with parameter counts")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'resnet*'")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_models)


def run_models(args: argparse.Namespace) -> int:
    from ..models import model_rows

    rows = model_rows(args.pattern)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'model':<22} {'family':<14} {'params':>12}  input")
    for r in rows:
        c, h, w = r["default_input"]
        print(f"{r['name']:<22} {r['family']:<14} {r['parameters']:>12,}  {c}×{h}×{w}")
    print(f"{len(rows)} model(s)")
    return 0
