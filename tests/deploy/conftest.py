"""The deploy commands through ``cnnkit.cli.main`` (with ``cnnkit.cli.deploy`` among its stage modules)."""

from __future__ import annotations

import pytest

import cnnkit.cli


@pytest.fixture
def dcli(cli, monkeypatch):
    """``cli`` with the deploy commands registered (``cnnkit.cli.deploy`` in STAGE_COMMANDS)."""
    if "cnnkit.cli.deploy" not in cnnkit.cli.STAGE_COMMANDS:
        monkeypatch.setattr(cnnkit.cli, "STAGE_COMMANDS", (*cnnkit.cli.STAGE_COMMANDS, "cnnkit.cli.deploy"))
    return cli
