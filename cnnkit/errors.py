"""The one error type a user can cause.

Every message says what was expected, what was found, and what to do. The CLI prints it on one
line without a traceback and exits with status 2.
"""

from __future__ import annotations


class CnnkitError(Exception):
    """A problem the user can fix: a bad path, image, config value or shape."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))  # always one line
