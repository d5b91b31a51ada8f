"""The CLI's commands on spec files: ``validate`` (every problem and warning of every spec, at once)
and ``graph`` (a spec's job graph as Mermaid or Graphviz DOT)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cdk_app.cli.arguments import Subparsers
from cdk_app.errors import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, CommandError
from cdk_app.graph import RENDERERS
from cdk_app.project import workflows_dir
from runtime.errors import SpecError


def _report(error: SpecError) -> int:
    for problem in error.problems:
        print(problem)
    count = len(error.problems)
    print(f"{count} problem{'s' if count != 1 else ''} found", file=sys.stderr)
    return EXIT_PROBLEMS


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
    from runtime.definition.loader import check_specs

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
    from runtime.definition.build import load_workflow

    if not Path(args.spec).is_file():
        raise CommandError(f"no such file: {args.spec}", EXIT_USAGE)
    try:
        workflow = load_workflow(args.spec)
    except SpecError as error:
        return _report(error)
    print(RENDERERS[args.format](workflow), end="")
    return EXIT_OK
