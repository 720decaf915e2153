"""The package's layers import one way: no import cycle among its sub-packages, and the order the
architecture page gives (a lower layer never imports a higher one)."""

from __future__ import annotations

import ast
from pathlib import Path

import cnnkit

ROOT = Path(cnnkit.__file__).parent
# lowest first; a module may import only from its own layer or those before it
LAYERS = [
    {"errors", "io", "machine"}, {"config", "runcard", "runtime", "drawing"}, {"conv"}, {"data"}, {"layers"},
    {"models"}, {"engine"}, {"predict"}, {"evaluate"}, {"detection", "segmentation", "verification"}, {"tasks"},
    {"transfer", "explain"}, {"deploy"},
    {"demo"}, {"cli", "__main__"},
]  # fmt: skip


def unit(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0].removesuffix(".py")


def imported_units(path: Path) -> set[str]:
    """cnnkit units ``path`` imports, at module or function level."""
    package = ".".join(("cnnkit", *path.relative_to(ROOT).with_suffix("").parts))
    package = package.removesuffix(".__init__") if path.name == "__init__.py" else package.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names = [".".join([*base, node.module] if node.module else base)]
                names += [f"{names[0]}.{a.name}" for a in node.names]
            else:
                names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for n in names:
            parts = n.split(".")
            if (
                parts[0] == "cnnkit"
                and len(parts) > 1
                and any((ROOT / f).exists() for f in (parts[1], f"{parts[1]}.py"))
            ):
                out.add(parts[1])
    return out


def test_every_unit_is_placed_in_a_layer():
    units = {unit(p) for p in ROOT.rglob("*.py")} - {"__init__"}
    placed = set().union(*LAYERS)
    assert units <= placed, f"place these in LAYERS: {units - placed}"


def test_lower_layers_never_import_higher_ones():
    rank = {u: i for i, layer in enumerate(LAYERS) for u in layer}
    wrong = []
    for path in ROOT.rglob("*.py"):
        me = unit(path)
        if me == "__init__":  # the package's own lazy API
            continue
        for other in imported_units(path):
            if other in rank and rank[other] > rank[me]:
                wrong.append(f"{path.relative_to(ROOT)} imports cnnkit.{other}")
    assert not wrong, "\n".join(wrong)
