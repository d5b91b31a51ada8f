"""The developer CLI, ``python -m cdk_app <command>``.

Each subcommand lives in one ``add_<command>(subparsers)`` function that declares its arguments
and sets ``run`` to a function of the parsed arguments returning the exit code; ``SUBCOMMANDS``
lists them. Exit codes: 0 fine, 1 problems found, 2 usage errors (argparse's own convention).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeAlias

from cdk_app.local.commands import add_run, add_start, add_status
from runtime.definition.loader import check_specs, load_workflow
from runtime.definition.model import Job, Workflow
from runtime.errors import SpecError

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2

CDK_JSON = Path("cdk.json")
"""Read from the current folder, like the CDK CLI does."""

DEFAULT_WORKFLOWS_DIR = "workflows"
"""Used when cdk.json has no ``workflowsDir`` context."""


def _usage_error(args: argparse.Namespace, message: str) -> int:
    print(f"{args.prog}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _report(error: SpecError) -> int:
    for problem in error.problems:
        print(problem)
    count = len(error.problems)
    print(f"{count} problem{'s' if count != 1 else ''} found", file=sys.stderr)
    return EXIT_PROBLEMS


def workflows_dir() -> str:
    """The spec folder the app synthesizes: cdk.json's ``workflowsDir`` context, so ``validate``
    checks exactly what ``cdk synth`` would build."""
    if not CDK_JSON.is_file():
        return DEFAULT_WORKFLOWS_DIR
    settings = json.loads(CDK_JSON.read_text(encoding="utf-8"))
    context = settings.get("context") if isinstance(settings, dict) else None
    if not isinstance(context, dict):
        return DEFAULT_WORKFLOWS_DIR
    return str(context.get("workflowsDir", DEFAULT_WORKFLOWS_DIR))


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
    try:
        paths: list[str] = args.paths or [workflows_dir()]
    except (OSError, ValueError) as exc:
        return _usage_error(args, f"cannot read {CDK_JSON}: {exc}")
    missing = [path for path in paths if not Path(path).exists()]
    if missing:
        return _usage_error(args, f"no such file or folder: {', '.join(missing)}")
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
        return _usage_error(args, f"no such file: {args.spec}")
    try:
        workflow = load_workflow(args.spec)
    except SpecError as error:
        return _report(error)
    print(RENDERERS[args.format](workflow), end="")
    return EXIT_OK


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def _mermaid_node(job: Job) -> str:
    if job.when is None:
        return f'job_{job.name}["{job.name}"]'
    return f'job_{job.name}{{{{"{job.name}<br/>when {_mermaid_text(job.when)}"}}}}'


def render_mermaid(workflow: Workflow) -> str:
    """A flowchart: a subgraph per phase, jobs left to right inside, phases top to bottom joined
    by thick arrows; a job with a condition is a hexagon showing it. Ids are prefixed because
    names like ``end`` are Mermaid keywords."""
    lines = ["flowchart TB"]
    for phase in workflow.phases:
        lines += [f'    subgraph phase_{phase.name}["{phase.name}"]', "        direction LR"]
        lines += [f"        {_mermaid_node(job)}" for job in phase.jobs]
        lines += [f"        job_{dep} --> job_{job.name}" for job in phase.jobs for dep in job.after]
        lines.append("    end")
    order = workflow.phase_order()
    lines += [
        f"    phase_{before.name} ==> phase_{after.name}"
        for before, after in zip(order, order[1:], strict=False)
    ]
    return "\n".join(lines) + "\n"


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _dot_text(text: str) -> str:
    return f'"{_dot_escape(text)}"'


def _dot_label(job: Job) -> str:
    """Name and condition on two lines (DOT's own ``\\n`` escape)."""
    return f'"{_dot_escape(job.name)}\\nwhen {_dot_escape(job.when or "")}"'


def render_dot(workflow: Workflow) -> str:
    """Graphviz: a cluster per phase; the edge between phases runs from the last job of one to
    the first of the next, clipped to the cluster borders (``compound``, ``ltail``/``lhead``)."""
    lines = [
        f"digraph {_dot_text(workflow.name)} {{",
        "    rankdir=LR;",
        "    compound=true;",
        "    node [shape=box, style=rounded];",
    ]
    for phase in workflow.phases:
        lines += [
            f"    subgraph {_dot_text('cluster_' + phase.name)} {{",
            f"        label={_dot_text(phase.name)};",
        ]
        for job in phase.jobs:
            condition = "" if job.when is None else f", shape=hexagon, label={_dot_label(job)}"
            lines.append(f"        {_dot_text(job.name)} [id={_dot_text('job_' + job.name)}{condition}];")
        lines += [
            f"        {_dot_text(dep)} -> {_dot_text(job.name)};" for job in phase.jobs for dep in job.after
        ]
        lines.append("    }")
    order = workflow.phase_order()
    for before, after in zip(order, order[1:], strict=False):
        last = [job for job in before.jobs if not before.dependents(job.name)][-1]
        first = after.roots[0]
        clusters = f"ltail={_dot_text('cluster_' + before.name)}, lhead={_dot_text('cluster_' + after.name)}"
        lines.append(f"    {_dot_text(last.name)} -> {_dot_text(first.name)} [{clusters}, penwidth=2];")
    lines.append("}")
    return "\n".join(lines) + "\n"


RENDERERS: dict[str, Callable[[Workflow], str]] = {"mermaid": render_mermaid, "dot": render_dot}


# --- wiring --------------------------------------------------------------------------------------

SUBCOMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    add_validate,
    add_graph,
    add_run,
    add_start,
    add_status,
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
    """Run one command; argparse exits with 2 by itself on usage errors."""
    args = build_parser().parse_args(argv)
    exit_code: int = args.run(args)
    return exit_code
