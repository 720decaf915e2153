"""The README's model table is generated from the registry and must stay in step with it."""

from __future__ import annotations

from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.skipif(not README.exists(), reason="no README")
def test_model_table_matches_the_registry():
    import importlib.util

    spec = importlib.util.spec_from_file_location("readme_models", README.parent / "scripts" / "readme_models.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = README.read_text()
    assert mod.START in text and mod.render(text) == text, "run `python scripts/readme_models.py`"


def test_readme_gives_the_two_commands():
    text = README.read_text()
    assert "make demo" in text and "make test" in text
