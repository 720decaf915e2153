"""The verification tests' shared run: one tiny verify run on digits (identities 0-6 trained, 7-9 held out)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def run(tmp_path_factory) -> Path:
    """A verify run on scikit-learn's digits, 1 epoch (~3 s), shared by test_verify.py and test_lfw.py."""
    from cnnkit.cli import main

    out = tmp_path_factory.mktemp("verify") / "run"
    args = ["train", "--task", "verify", "--data", "digits", "--epochs", "1", "--batch-size", "64", "--out", str(out)]
    assert main([*args, "--quiet"]) == 0
    return out
