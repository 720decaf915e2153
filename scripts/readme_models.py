"""Regenerate the model table in README.md from the registry (`cnnkit models --json`), between the markers
``<!-- models:start -->`` and ``<!-- models:end -->``. ``--check`` exits 1 when the README is out of date."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cnnkit.models import model_rows

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- models:start -->", "<!-- models:end -->"


def table() -> str:
    lines = ["| model | family | parameters | default input | reference |", "|---|---|---:|---|---|"]
    for r in model_rows():
        c, h, w = r["default_input"]
        lines.append(f"| `{r['name']}` | {r['family']} | {r['parameters']:,} | {c}×{h}×{w} | {r['paper']} |")
    return "\n".join(lines)


def render(text: str) -> str:
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{table()}\n{END}{tail}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--check", action="store_true")
    args = p.parse_args()
    text = README.read_text()
    new = render(text)
    if args.check:
        return int(new != text)
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
