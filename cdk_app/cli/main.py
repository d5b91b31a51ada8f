"""The developer CLI, ``python -m cdk_app <command>`` (or ``./wf <command>`` from any folder).

Each subcommand lives in one ``add_<command>(subparsers)`` function that declares its arguments
and sets ``run`` to a function of the parsed arguments returning the exit code; ``SUBCOMMANDS``
lists them. A command that cannot do its job raises ``CommandError``; ``main`` is the one place
that prints it and picks the exit code (``cdk_app.errors``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from cdk_app.cli.approve import add_approve, add_reject
from cdk_app.cli.arguments import Subparsers
from cdk_app.cli.backfill import add_backfill
from cdk_app.cli.callbacks import add_complete, add_heartbeat
from cdk_app.cli.console import add_console
from cdk_app.cli.dev import add_dev
from cdk_app.cli.events import add_send_event
from cdk_app.cli.operate import add_cancel, add_history, add_redrive, add_runs
from cdk_app.cli.prune import add_prune
from cdk_app.cli.run import add_run, add_start, add_status
from cdk_app.cli.specs import add_graph, add_validate
from cdk_app.errors import EXIT_INTERRUPTED, EXIT_PROBLEMS, CommandError
from runtime.errors import RunError, StoreError

# --- validate ------------------------------------------------------------------------------------


# --- graph ---------------------------------------------------------------------------------------


# --- wiring --------------------------------------------------------------------------------------

SUBCOMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    add_validate,
    add_graph,
    add_run,
    add_start,
    add_backfill,
    add_status,
    add_runs,
    add_history,
    add_cancel,
    add_redrive,
    add_prune,
    add_approve,
    add_reject,
    add_send_event,
    add_complete,
    add_heartbeat,
    add_dev,
    add_console,
)
"""Add a subcommand by writing its ``add_<command>`` function and listing it here."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cdk_app", description="Declarative Lambda workflows on MongoDB and EventBridge."
    )
    subparsers = parser.add_subparsers(metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and turn its expected failures into one message and an exit code;
    argparse exits with 2 by itself on usage errors."""
    args = build_parser().parse_args(argv)
    try:
        exit_code: int = args.run(args)
    except CommandError as error:
        print(f"{args.prog}: error: {error}", file=sys.stderr)
        return error.exit_code
    except (StoreError, RunError) as error:
        print(f"{args.prog}: error: {error}", file=sys.stderr)
        return EXIT_PROBLEMS
    except KeyboardInterrupt:
        print(f"{args.prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return exit_code
