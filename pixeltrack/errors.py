"""CommandError: a mistake a user can make, told in one line by `pixeltrack` (no traceback, exit 2)."""

from __future__ import annotations


class CommandError(Exception):
    """What went wrong and what to do, in one line; `pixeltrack.cli.main` prints `pixeltrack <cmd>: <it>`.
    Raised before the command creates anything, so a refused command leaves no file behind."""
