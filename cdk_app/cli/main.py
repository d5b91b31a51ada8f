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
from pathlib import Path
from typing import TypeAlias

from cdk_app.cli.approve import add_approve, add_reject
from cdk_app.cli.operate import add_cancel, add_history, add_redrive, add_runs
from cdk_app.cli.run import add_run, add_start, add_status
from cdk_app.console.server import add_console
from cdk_app.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, CommandError
from cdk_app.graph import RENDERERS
from cdk_app.local.dev import add_dev
from cdk_app.project import workflows_dir
from runtime.definition.loader import check_specs, load_workflow
from runtime.errors import RunError, SpecError, StoreError

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _report(error: SpecError) -> int:
    for problem in error.problems:
        print(problem)
    count = len(error.problems)
    print(f"{count} problem{'s' if count != 1 else ''} found", file=sys.stderr)
    return EXIT_PROBLEMS


# --- validate ------------------------------------------------------------------------------------


def add_validate(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check workflow specs and report every problem",
        description="Check specs (files or folders) and their job code; print every problem and "
        "warning, one per line, and the files in a folder that are not specs.",
    )
    parser.add_argument(
        "paths", nargs="*", metavar="PATH", help="spec files or folders (default: cdk.json's workflowsDir)"
    )
    parser.set_defaults(run=run_validate, prog=parser.prog)


def run_validate(args: argparse.Namespace) -> int:
    paths: list[str] = args.paths or [workflows_dir()]
    missing = [path for path in paths if not Path(path).exists()]
    if missing:
        raise CommandError(f"no such file or folder: {', '.join(missing)}", EXIT_USAGE)
    check = check_specs(paths)
    for line in (*check.skipped, *check.problems, *check.warnings):
        print(line)
    warnings = f"{len(check.warnings)} warning{'s' if len(check.warnings) != 1 else ''}"
    if check.problems:
        count = len(check.problems)
        also = f", {warnings}" if check.warnings else ""
        print(f"{count} problem{'s' if count != 1 else ''} found{also}", file=sys.stderr)
        return EXIT_PROBLEMS
    valid = len(check.workflows)
    print(f"{valid} spec{'s' if valid != 1 else ''} valid" + (f" ({warnings})" if check.warnings else ""))
    return EXIT_OK


# --- graph ---------------------------------------------------------------------------------------


def add_graph(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "graph",
        help="print a spec's job graph (Mermaid or Graphviz DOT)",
        description="Print the job graph: one cluster per phase, phases linked in run order.",
    )
    parser.add_argument("spec", metavar="SPEC", help="a spec file")
    parser.add_argument("--format", choices=tuple(RENDERERS), default="mermaid", help="default: mermaid")
    parser.set_defaults(run=run_graph, prog=parser.prog)


def run_graph(args: argparse.Namespace) -> int:
    if not Path(args.spec).is_file():
        raise CommandError(f"no such file: {args.spec}", EXIT_USAGE)
    try:
        workflow = load_workflow(args.spec)
    except SpecError as error:
        return _report(error)
    print(RENDERERS[args.format](workflow), end="")
    return EXIT_OK


# --- wiring --------------------------------------------------------------------------------------

SUBCOMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    add_validate,
    add_graph,
    add_run,
    add_start,
    add_status,
    add_runs,
    add_history,
    add_cancel,
    add_redrive,
    add_approve,
    add_reject,
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
