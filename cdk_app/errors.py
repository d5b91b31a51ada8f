"""How a CLI command ends: the exit codes, stated once, and the error a command raises.

A command returns its outcome's exit code (a valid spec, a succeeded run: ``EXIT_OK``; problems
found, a failed or cancelled run, a refused operation: ``EXIT_PROBLEMS``; a run still going on
when ``status --wait`` gave up: ``EXIT_STILL_RUNNING``) and raises ``CommandError`` when it
cannot do its job; ``cdk_app.cli.main.main`` alone turns that into ``<prog>: error: <message>`` on
stderr.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_PROBLEMS = 1
"""Problems found, a run that failed or was cancelled, an operation the run refuses, or an expected
failure (MongoDB out of reach, ...)."""
EXIT_USAGE = 2
"""A bad argument, as argparse exits on its own usage errors."""
EXIT_STILL_RUNNING = 3
"""``status --wait`` ran out of time before the run ended."""
EXIT_INTERRUPTED = 130
"""Ctrl-C: 128 + SIGINT, as shells report it."""


class CommandError(Exception):
    """Ends a command with a one-line message and an exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_PROBLEMS) -> None:
        super().__init__(message)
        self.exit_code = exit_code
