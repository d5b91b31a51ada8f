"""The developer CLI, ``python -m cdk_app <command>`` (or ``./wf <command>`` from any folder).

Each subcommand lives in one ``add_<command>(subparsers)`` function that declares its arguments
and sets ``run`` to a function of the parsed arguments returning the exit code; ``SUBCOMMANDS``
lists them. A command that cannot do its job raises ``CommandError``; ``main`` is the one place
that prints it and picks the exit code (``cdk_app.errors``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeAlias

from cdk_app.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, CommandError
from cdk_app.graph import RENDERERS
from cdk_app.local.commands import add_run, add_start, add_status
from cdk_app.local.operate import add_cancel, add_history, add_redrive, add_runs
from runtime.definition.loader import check_specs, load_workflow
from runtime.errors import RunError, SpecError, StoreError

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

CDK_JSON = "cdk.json"
"""Marks the project root: looked for in the current folder and the folders above it."""

DEFAULT_WORKFLOWS_DIR = "workflows"
"""Used when cdk.json has no ``workflowsDir`` context."""


def _report(error: SpecError) -> int:
    for problem in error.problems:
        print(problem)
    count = len(error.problems)
    print(f"{count} problem{'s' if count != 1 else ''} found", file=sys.stderr)
    return EXIT_PROBLEMS


def project_root(start: Path) -> Path | None:
    """The nearest folder holding cdk.json, from ``start`` upwards: the CLI works from any folder
    of the project, as git does."""
    for folder in (start, *start.parents):
        if (folder / CDK_JSON).is_file():
            return folder
    return None


def workflows_dir() -> str:
    """The spec folder the app synthesizes: cdk.json's ``workflowsDir`` context, resolved from the
    project root (where ``cdk synth`` runs the app), so ``validate`` checks exactly what synth
    would build. Given relative to the current folder, as the user's own paths are."""
    root = project_root(Path.cwd())
    if root is None:
        return DEFAULT_WORKFLOWS_DIR
    try:
        settings = json.loads((root / CDK_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot read {os.path.relpath(root / CDK_JSON)}: {exc}", EXIT_USAGE) from exc
    context = settings.get("context") if isinstance(settings, dict) else None
    folder = context.get("workflowsDir", DEFAULT_WORKFLOWS_DIR) if isinstance(context, dict) else None
    return os.path.relpath(root / str(folder or DEFAULT_WORKFLOWS_DIR))


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
