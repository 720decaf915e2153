"""The README says only what is true: its model table, its command lines and its pictures."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from cnnkit.cli import build_parser

README = Path(__file__).resolve().parent.parent / "README.md"
TEXT = README.read_text()


def test_model_table_matches_the_registry():
    spec = importlib.util.spec_from_file_location("readme_models", README.parent / "scripts" / "readme_models.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.START in TEXT and mod.render(TEXT) == TEXT, "run `python scripts/readme_models.py`"


def code_blocks(text: str) -> list[str]:
    """Fenced blocks and 4-space indented blocks."""
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)
    indented = re.findall(r"(?:^(?: {4}|\t)[^\n]*\n)+", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M), re.M)
    return fenced + indented


def command_lines() -> list[str]:
    """Every `cnnkit …` line of a code block, without its prompt and trailing comment."""
    lines = []
    for block in code_blocks(TEXT):
        for line in block.splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("cnnkit "):
                lines.append(line)
    return lines


COMMANDS = command_lines()


def test_the_readme_shows_commands():
    assert len(COMMANDS) >= 10 and any(c.startswith("cnnkit train") for c in COMMANDS)


@pytest.mark.parametrize("line", COMMANDS)
def test_every_command_line_parses(line):
    argv = shlex.split(line, comments=True)[1:]
    args = build_parser().parse_args(argv)  # argparse exits (a failure here) on an unknown flag or subcommand
    assert args is not None


IMAGES = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", TEXT) + re.findall(r'<img [^>]*src="([^"]+)"', TEXT)


def test_the_readme_links_images():
    assert IMAGES


@pytest.mark.parametrize("link", IMAGES)
def test_every_linked_image_exists(link):
    assert (README.parent / link).is_file(), f"README links {link}, which is not in the repository"


def test_readme_gives_the_two_commands():
    assert "make demo" in TEXT and "make test" in TEXT
