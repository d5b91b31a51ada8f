"""The CLI's ``run``, ``start`` and ``status`` commands (registered in ``cdk_app.cli.main``).

Every expected problem (bad input, a spec with mistakes, MongoDB out of reach, broken job code)
is a ``CommandError`` (or a ``StoreError`` / ``RunError``) that ``cdk_app.cli.main.main`` turns into
a one-line message and an exit code (``cdk_app.errors``), never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdk_app.cli.arguments import Subparsers, add_store_arguments, given_address, open_client
from cdk_app.errors import EXIT_OK, EXIT_PROBLEMS, EXIT_STILL_RUNNING, EXIT_USAGE, CommandError
from cdk_app.local import RUN_TIMEOUT_SECONDS
from runtime.errors import SpecError
from runtime.statuses import RunState
from runtime.store.settings import StoreSettings

if TYPE_CHECKING:
    from cdk_app.connect import MongoAddress
    from runtime.client import Client
    from runtime.definition.model import Workflow
    from runtime.service.run_view import RunReport


def _load_spec(path: str) -> Workflow:
    from runtime.definition.loader import load_workflow

    if not Path(path).is_file():
        raise CommandError(f"no such file: {path}", EXIT_USAGE)
    try:
        return load_workflow(path)
    except SpecError as error:
        count = len(error.problems)
        raise CommandError(
            "\n".join([*map(str, error.problems), f"{count} problem{'s' if count != 1 else ''} found"])
        ) from None


def _child_workflows(workflow: Workflow, path: str) -> list[Workflow]:
    """The workflows ``workflow`` runs as children (directly or through them), from the specs
    of its folder: the app ``run`` deploys on this machine with it."""
    from runtime.definition.children import called_workflows
    from runtime.definition.loader import check_specs

    if not any(job.child_workflow is not None for job in workflow.jobs()):
        return []
    check = check_specs([Path(path).parent])
    if check.problems:
        count = len(check.problems)
        raise CommandError(
            "\n".join(
                [
                    *map(str, check.problems),
                    f"{count} problem{'s' if count != 1 else ''} found in the specs beside {path}, "
                    "whose workflows it runs as children",
                ]
            )
        )
    return called_workflows(workflow, {loaded.name: loaded for loaded in check.workflows})


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    given = parser.add_mutually_exclusive_group()
    given.add_argument("--input", metavar="JSON", help="the run input, a JSON object (default: {})")
    given.add_argument("--input-file", metavar="PATH", help="a file holding the run input (a JSON object)")


def _run_input(args: argparse.Namespace) -> dict[str, Any]:
    """The run input of ``--input`` or ``--input-file`` (default: {})."""
    text, where = args.input, "--input"
    if args.input_file is not None:
        where = f"--input-file {args.input_file}"
        try:
            text = Path(args.input_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"{where}: cannot read: {exc}", EXIT_USAGE) from exc
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CommandError(f"{where} is not valid JSON: {exc}", EXIT_USAGE) from exc
    if not isinstance(value, dict):
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise CommandError(f"{where} must be a JSON object, got {type(value).__name__}: {shown}", EXIT_USAGE)
    return value


def _checked_input(workflow: Workflow, run_input: dict[str, Any]) -> dict[str, Any]:
    """Refuse, before anything starts or is written, an input its ``input_schema`` does not take."""
    from runtime.definition.input_check import InputRefused, check_input

    try:
        check_input(workflow.name, workflow.input_schema, run_input)
    except InputRefused as refused:
        lines = "\n".join(f"  {problem}" for problem in refused.problems)
        raise CommandError(
            f"the run input does not match the input_schema of {workflow.name!r}:\n{lines}", EXIT_USAGE
        ) from None
    return run_input


# --- run -----------------------------------------------------------------------------------------


def add_run(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a workflow on this machine (embedded MongoDB, in-process jobs)",
        description="Run a workflow locally through the real handlers, with live progress and a summary.",
    )
    parser.add_argument("spec", metavar="SPEC", help="a spec file")
    add_input_arguments(parser)
    add_store_arguments(parser, fallback="start an embedded server")
    parser.add_argument("--json", action="store_true", help="print the outcome as one JSON object on stdout")
    parser.add_argument(
        "--faults",
        metavar="LIST",
        help="inject faults: duplicate=N, reorder, crash=P, crash_jobs=P (comma-separated)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the faults' random choices (default: 0)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=RUN_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help=f"give up after this long without a new status (default: {RUN_TIMEOUT_SECONDS:g})",
    )
    parser.set_defaults(run=_run, prog=parser.prog)


def _store_arguments(address: MongoAddress, database: str) -> str:
    """What a command in another shell needs to reach this run's database: its URI (quoted for
    the shell; a password in it shown as ``***``) and, when it is not the default, the database."""
    from cdk_app.connect import redacted

    given = ["--mongo-uri", redacted(address.uri)]
    if database != StoreSettings().database:
        given += ["--database", database]
    return shlex.join(given)


def _run(args: argparse.Namespace) -> int:
    from cdk_app.connect import MongoAddress, connect
    from cdk_app.local.delivery import FaultSettings
    from cdk_app.local.embedded_mongo import EmbeddedMongo
    from cdk_app.local.processes import JobProcesses, python_difference
    from cdk_app.local.runner import LocalRunner, RunOptions
    from cdk_app.terminal.output import console
    from cdk_app.terminal.render import Progress

    try:
        faults = FaultSettings.parse(args.faults, args.seed)
    except ValueError as exc:
        raise CommandError(f"--faults: {exc}", EXIT_USAGE) from exc
    if not math.isfinite(args.timeout) or args.timeout <= 0:
        raise CommandError(f"--timeout must be positive, got {args.timeout:g}", EXIT_USAGE)
    run_input = _run_input(args)
    workflow = _load_spec(args.spec)
    _checked_input(workflow, run_input)
    children = _child_workflows(workflow, args.spec)
    progress = console(stderr=True)
    # Logs (the stub's too, which runs in this process) must go to stderr like the progress.
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    server: EmbeddedMongo | None = None
    address = given_address(args)
    processes = JobProcesses()
    try:
        if address is None:
            with progress.status("starting the embedded MongoDB server"):
                server = EmbeddedMongo()
            address = MongoAddress(server.uri, "the embedded server")
            # Printed so that other commands (approve, status, history) can reach the run.
            progress.print(f"embedded MongoDB server on {server.uri} (stopped when the run ends)")
        store = connect(address, args.database, control_plane=True)
        if (difference := python_difference()) is not None:
            progress.print(f"warning: {difference}", style="yellow", markup=False, soft_wrap=True)
        handlers = processes.warm(workflow)
        runner = LocalRunner(
            store,
            workflow,
            handlers,
            Progress(progress, workflow, store, _store_arguments(address, args.database)),
            RunOptions(faults=faults, timeout=args.timeout),
            children=[(child, processes.warm(child)) for child in children],
        )
        # Job code prints: while it runs, stdout is stderr, so --json output stays one object.
        with contextlib.redirect_stdout(sys.stderr):
            report = runner.run(run_input)
    finally:
        processes.close()
        if server is not None:
            server.stop()
    _print_report(args, report)
    return EXIT_OK if report.status == RunState.SUCCEEDED else EXIT_PROBLEMS


def _print_report(args: argparse.Namespace, report: RunReport) -> None:
    from cdk_app.terminal.output import console
    from cdk_app.terminal.render import print_summary

    if args.json:
        print(json.dumps(report.to_json(), default=str))
        if report.error:
            print(f"{args.prog}: {report.error.strip().splitlines()[0]}", file=sys.stderr)
    else:
        print_summary(console(), report)


# --- start ---------------------------------------------------------------------------------------


def add_start(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "start",
        help="start a run on a deployed database and print its id",
        description="Start a run (idempotently on --run-id) the way the starter function does.",
    )
    parser.add_argument("spec", metavar="SPEC", help="a spec file")
    add_store_arguments(parser)
    parser.add_argument("--run-id", metavar="ID", help="a run id of your choosing (default: a new one)")
    add_input_arguments(parser)
    parser.set_defaults(run=_start, prog=parser.prog)


def _start(args: argparse.Namespace) -> int:
    run_input = _run_input(args)
    workflow = _load_spec(args.spec)
    _checked_input(workflow, run_input)
    started = open_client(args).start(workflow, run_input, run_id=args.run_id)
    if not started.created:
        print(
            f"run {started.run_id} existed already with the same input; nothing new started", file=sys.stderr
        )
    print(started.run_id)
    return EXIT_OK


# --- status --------------------------------------------------------------------------------------

OUTCOMES: dict[str, int] = {
    RunState.SUCCEEDED: EXIT_OK,
    RunState.RUNNING: EXIT_STILL_RUNNING,
    RunState.QUEUED: EXIT_STILL_RUNNING,
}
"""``status --wait``'s exit code by the run's state (a queued run has not ended either); a run
that ended otherwise (failed or cancelled) exits with ``EXIT_PROBLEMS``."""

WATCH_REDRAWS = 4
"""How many times a second ``status --watch`` reads the run and redraws it."""


def add_status(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "status",
        help="show a run: its status, phase and jobs (--wait: until it ends; --watch: live)",
        description="Show a run from its run document: status, current phase and a line per job. "
        "With --wait, block until the run ends and exit 0 if it succeeded, 1 if it failed or was "
        "cancelled, 3 if it was still running when the wait ran out. With --watch, redraw the "
        "table as the run advances until it ends, and exit as --wait does.",
    )
    parser.add_argument("run_id", metavar="RUN_ID")
    add_store_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the run as one JSON object")
    parser.add_argument(
        "--wait",
        nargs="?",
        type=float,
        const=math.inf,
        metavar="SECONDS",
        help="wait until the run ends, or at most SECONDS (default: no limit)",
    )
    parser.add_argument("--watch", action="store_true", help="redraw the run's table live until the run ends")
    parser.set_defaults(run=_status, prog=parser.prog)


def _watch(client: Client, run_id: str, report: RunReport) -> RunReport:
    """Redraw the table in place (rich's ``Live``) until the run ends. A terminal that is not
    interactive gets the last drawing only, so a piped ``--watch`` prints the final table."""
    from rich.live import Live

    from cdk_app.terminal.output import console as output_console
    from cdk_app.terminal.output import uncut
    from cdk_app.terminal.render import print_summary_notes, summary_table

    console = output_console()
    expand = not uncut(console)
    with Live(summary_table(report, expand), console=console, refresh_per_second=WATCH_REDRAWS) as live:
        # Until the run has ended with no redrive about to reopen it, as --wait waits.
        for report in client.watch(run_id, poll=1 / WATCH_REDRAWS):
            live.update(summary_table(report, expand))
    print_summary_notes(console, report)
    return report


def _status(args: argparse.Namespace) -> int:
    from cdk_app.terminal.output import console
    from runtime.errors import RunNotFound

    if args.wait is not None and not (args.wait > 0):
        raise CommandError(f"--wait must be a positive number of seconds, got {args.wait:g}", EXIT_USAGE)
    if args.watch and (args.json or args.wait is not None):
        raise CommandError("--watch draws a live table: it goes with neither --json nor --wait", EXIT_USAGE)
    client = open_client(args)
    try:
        report = client.get(args.run_id)
    except RunNotFound:
        raise CommandError(f"unknown run {args.run_id!r} in database {args.database!r}") from None
    if args.watch:
        return OUTCOMES.get(_watch(client, args.run_id, report).status, EXIT_PROBLEMS)
    if args.wait is None:
        _print_report(args, report)
        return EXIT_OK
    # Asked even of a run that has ended: a failed run with a redrive requested and not yet
    # applied is about to run again, and ``redrive`` then ``status --wait`` waits for that.
    with console(stderr=True).status(f"waiting for run {args.run_id} to end"):
        report = client.wait(args.run_id, None if math.isinf(args.wait) else args.wait)
    ended = client.has_ended(args.run_id)
    _print_report(args, report)
    return OUTCOMES.get(report.status, EXIT_PROBLEMS) if ended else EXIT_STILL_RUNNING
