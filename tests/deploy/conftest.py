"""The deploy commands through ``cnnkit.cli.main`` (with ``cnnkit.cli.deploy`` among its stage modules)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import cnnkit.cli


@pytest.fixture
def dcli(cli, monkeypatch):
    """``cli`` with the deploy commands registered (``cnnkit.cli.deploy`` in STAGE_COMMANDS)."""
    if "cnnkit.cli.deploy" not in cnnkit.cli.STAGE_COMMANDS:
        monkeypatch.setattr(cnnkit.cli, "STAGE_COMMANDS", (*cnnkit.cli.STAGE_COMMANDS, "cnnkit.cli.deploy"))
    return cli


@contextlib.contextmanager
def served(app: Any) -> Iterator[int]:
    """``app`` served by uvicorn on a free loopback port, in a thread stopped on leaving; yields the port."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield sock.getsockname()[1]
    finally:
        srv.should_exit = True
        thread.join(10)
        sock.close()
