"""The ``cnnkit`` command: one parser, one small function per subcommand.

This package holds all the argparse code and nothing else: each module adds the commands of one stage
(``add_commands(subparsers)``) and calls the library (``cnnkit.engine``, ``cnnkit.tasks``, …) from its run
functions. Library code never imports from here. Modules here import the library lazily, inside the run
functions, so ``cnnkit --version`` and ``cnnkit --help`` load no torch. Every subcommand sets
``func(args) -> int``; ``main(argv)`` returns the exit status, so tests call it in-process. A
:class:`CnnkitError` prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from collections.abc import Sequence

from .. import __version__
from ..errors import CnnkitError
from ..machine import configure_threads

# Modules with ``add_commands(subparsers)``, in the order their commands appear in ``cnnkit --help``.
STAGE_COMMANDS: tuple[str, ...] = (
    "cnnkit.cli.models",
    "cnnkit.cli.train",
    "cnnkit.cli.evaluate",
    "cnnkit.cli.predict",
    "cnnkit.cli.features",
    "cnnkit.cli.data",
    "cnnkit.cli.detect",
    "cnnkit.cli.verify",
    "cnnkit.cli.faces",
    "cnnkit.cli.deploy",
    "cnnkit.cli.conv",
    "cnnkit.cli.explain",
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cnnkit", description="Convolutional neural networks for computer vision.")
    parser.add_argument("--version", action="version", version=f"cnnkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in STAGE_COMMANDS:
        importlib.import_module(module).add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``cnnkit`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    configure_threads(command=next((a for a in argv if not a.startswith("-")), ""))  # before a command loads torch
    parser = build_parser()
    if argv[:2] == ["visualize", "units"]:  # `cnnkit visualize units RUN …` is the visualize-units command
        argv = ["visualize-units", *argv[2:]]
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    try:
        return int(args.func(args) or 0)
    except CnnkitError as e:
        print(f"cnnkit: error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # `cnnkit models | head`: the reader went away; not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps Python's exit-time flush quiet
        return 0
    except KeyboardInterrupt:
        print(f"cnnkit: interrupted{KEPT if args.command == 'train' else ''}", file=sys.stderr)
        return 130
    except Terminated:
        print(f"cnnkit: terminated (SIGTERM){KEPT if args.command == 'train' else ''}", file=sys.stderr)
        return 143
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


KEPT = "; the last saved checkpoint is kept"


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so a training stops the way Ctrl-C stops it."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()
