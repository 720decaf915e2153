"""An architecture diagram as hand-written SVG: one box per layer call, top to bottom, with its output shape.

No graphviz: boxes are stacked in execution order (branches of ResNet or Inception blocks appear one after
another, as they run). Colours by kind: conv blue, pool orange, norm grey, activation green, fc purple.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

from ..io import write_text
from .summary import LayerRow, Summary, format_shape, human

COLOURS = {
    "Conv": "#cfe2ff",
    "Pool": "#ffe5b4",
    "Norm": "#e2e3e5",
    "Linear": "#e0cffc",
    "ReLU": "#d1e7dd",
    "Tanh": "#d1e7dd",
    "Sigmoid": "#d1e7dd",
    "SiLU": "#d1e7dd",
    "Hardswish": "#d1e7dd",
}
BOX_W, BOX_H, GAP, MARGIN = 460, 30, 12, 20


def _colour(kind: str) -> str:
    return next((c for key, c in COLOURS.items() if key in kind), "#ffffff")


def _box(i: int, row: LayerRow, last: bool = False) -> str:
    y = MARGIN + 40 + i * (BOX_H + GAP)
    label = f"{row.name}  {row.kind} {row.detail}".strip()
    right = format_shape(row.shape) + (f"  {human(row.macs)} MACs" if row.macs else "")
    arrow = (
        ""
        if last
        else (
            f'<line x1="{MARGIN + BOX_W / 2}" y1="{y + BOX_H}" x2="{MARGIN + BOX_W / 2}" y2="{y + BOX_H + GAP}"'
            ' stroke="#555" marker-end="url(#arrow)"/>'
        )
    )
    return (
        f'<rect x="{MARGIN}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="4" fill="{_colour(row.kind)}"'
        f' stroke="#333"/>\n'
        f'<text x="{MARGIN + 8}" y="{y + 19}" font-size="12">{escape(label)}</text>\n'
        f'<text x="{MARGIN + BOX_W - 8}" y="{y + 19}" font-size="12" text-anchor="end">{escape(right)}</text>\n' + arrow
    )


def summary_svg(s: Summary) -> str:
    """The SVG document text for a :class:`Summary`: a header, one box per row, totals at the bottom."""
    height = MARGIN * 2 + 40 + len(s.rows) * (BOX_H + GAP) + 30
    width = BOX_W + 2 * MARGIN
    head = f"{s.model}  input {'×'.join(map(str, s.input))}"
    foot = f"{s.params:,} parameters, {human(s.macs)} MACs, output {format_shape(s.output)}"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
        ' font-family="DejaVu Sans, Arial, sans-serif">',
        '<defs><marker id="arrow" markerWidth="8" markerHeight="8" refX="4" refY="4" orient="auto">'
        '<path d="M0,0 L8,4 L0,8 z" fill="#555"/></marker></defs>',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{MARGIN}" y="{MARGIN + 16}" font-size="15" font-weight="bold">{escape(head)}</text>',
        *(_box(i, r, i == len(s.rows) - 1) for i, r in enumerate(s.rows)),
        f'<text x="{MARGIN}" y="{height - MARGIN}" font-size="13">{escape(foot)}</text>',
        "</svg>",
    ]
    return "\n".join(parts) + "\n"


def write_svg(s: Summary, path: str | Path) -> Path:
    """Write :func:`summary_svg` to ``path`` atomically."""
    return write_text(path, summary_svg(s))
