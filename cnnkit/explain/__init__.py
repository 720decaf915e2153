"""Explain a model: per-layer summary, shape preflight, layer-list specs, SVG diagrams, and what a run looks at."""

from ..models.spec import Spec, SpecModel, build_spec_model, load_spec
from .preflight import nearest_fitting, parse_input, preflight
from .summary import LayerRow, Summary, format_table, summarize
from .svg import summary_svg

__all__ = [
    "LayerRow",
    "Spec",
    "SpecModel",
    "Summary",
    "build_spec_model",
    "format_table",
    "load_spec",
    "nearest_fitting",
    "parse_input",
    "preflight",
    "summarize",
    "summary_svg",
]
