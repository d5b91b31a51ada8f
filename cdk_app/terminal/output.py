"""Where the CLI prints for people: a terminal gets lines fitted to its width; a file or a pipe (a
log, CI, ``| less``) gets every line whole, since nothing there would show what was cut."""

from __future__ import annotations

from rich.console import Console

UNCUT_WIDTH = 100_000
"""The width of a console that is not a terminal: wider than any line, so none is cut."""
RULE_WIDTH = 80
"""A phase's heading rule in a file or a pipe (a terminal's spans its width)."""


def console(*, stderr: bool = False, soft_wrap: bool = False) -> Console:
    """A console on stdout (or stderr) that cuts nothing unless it is a terminal. A table that
    would expand to the width must not on it (``uncut``)."""
    made = Console(stderr=stderr, highlight=False, soft_wrap=soft_wrap)
    if not made.is_terminal:
        made.width = UNCUT_WIDTH
    return made


def uncut(target: Console) -> bool:
    """Whether ``target`` is as wide as any line (``console`` made it for a file or a pipe)."""
    return target.width >= UNCUT_WIDTH


def rule_width(target: Console) -> int:
    return RULE_WIDTH if uncut(target) else target.width
