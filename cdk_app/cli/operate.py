"""The CLI's commands that operate runs: ``cancel``, ``redrive``, ``runs`` and ``history``
(registered in ``cdk_app.cli.main``).

They work on any database (the dev server's, Atlas) through ``runtime.service.operations``: a cancel or
a redrive is a request recorded in ``statuses``, which whatever delivers that database's
statuses (the deployed stack, the dev server) applies. A request the run refuses (an ended run
to cancel, a running or succeeded run to redrive, an unknown run) is a ``RunError``:
``cdk_app.cli.main.main`` prints it as one line and exits 1.
"""

from __future__ import annotations

import argparse
import difflib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cdk_app.cli.arguments import Subparsers, add_store_arguments, open_client, open_store
from cdk_app.errors import EXIT_OK, EXIT_USAGE, CommandError
from cdk_app.project import workflows_dir
from runtime.statuses import RunState

if TYPE_CHECKING:
    from runtime.service.operations import OperationReceipt
    from runtime.store.mongo import MongoStore

DEFAULT_LIMIT = 50


def _print_receipt(receipt: OperationReceipt, what: str) -> None:
    if receipt.created:
        print(f"{what} of run {receipt.run_id} requested")
    else:
        print(f"{what} of run {receipt.run_id} was requested before (it is applied once)")


# --- cancel ----------------------------------------------------------------------------------------


def add_cancel(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "cancel",
        help="cancel a running run",
        description="Ask for a running run to end cancelled: nothing more is dispatched; jobs already "
        "running finish, and their reports change nothing. An ended run exits 1.",
    )
    parser.add_argument("run_id", metavar="RUN_ID")
    parser.add_argument("--reason", metavar="TEXT", help="why, kept in the run's history")
    add_store_arguments(parser)
    parser.set_defaults(run=_cancel, prog=parser.prog)


def _cancel(args: argparse.Namespace) -> int:
    _print_receipt(open_client(args).cancel(args.run_id, args.reason), "cancel")
    return EXIT_OK


# --- redrive ---------------------------------------------------------------------------------------


def add_redrive(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "redrive",
        help="go on with a failed or cancelled run from where it stopped",
        description="Reopen a failed or cancelled run on its own definition and job code: succeeded "
        "jobs keep their outputs and are not run again, the others get new attempts with a fresh "
        "retry budget. With --upgrade, on the current spec and code instead. A running or "
        "succeeded run, or an upgrade the run cannot take, exits 1.",
    )
    parser.add_argument("run_id", metavar="RUN_ID")
    parser.add_argument(
        "--upgrade",
        action="store_true",
        help="run on the current spec and job code instead of the run's own (refused, saying why, "
        "when a job that succeeded is gone or runs after other jobs now)",
    )
    parser.add_argument(
        "--workflows",
        metavar="DIR",
        type=Path,
        help="with --upgrade: the spec folder (default: cdk.json's workflowsDir)",
    )
    add_store_arguments(parser)
    parser.set_defaults(run=_redrive, prog=parser.prog)


def _redrive(args: argparse.Namespace) -> int:
    if args.workflows is not None and not args.upgrade:
        raise CommandError("--workflows goes with --upgrade only", EXIT_USAGE)
    folder = args.workflows if args.workflows is not None else Path(workflows_dir())
    receipt = open_client(args, folder).redrive(args.run_id, upgrade=args.upgrade)
    _print_receipt(receipt, "upgrading redrive" if args.upgrade else "redrive")
    return EXIT_OK


# --- runs ------------------------------------------------------------------------------------------


def _since(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise CommandError(
            f"--since {text!r} is not an ISO date or time (e.g. 2026-01-31 or 2026-01-31T08:00Z)", EXIT_USAGE
        ) from exc
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of runs, at least 1, got {text!r}")
    return value


def add_runs(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "runs",
        help="list runs, newest first",
        description="List runs newest first, by when they started; each filter reads an index.",
    )
    parser.add_argument("--workflow", metavar="W", help="only runs of this workflow")
    parser.add_argument(
        "--status", metavar="S", choices=[state.value for state in RunState], help="only runs in this state"
    )
    parser.add_argument(
        "--since", metavar="ISO", help="only runs started at or after this date or time (UTC unless it says)"
    )
    parser.add_argument(
        "--limit", metavar="N", type=_limit, default=DEFAULT_LIMIT, help=f"default: {DEFAULT_LIMIT}"
    )
    parser.add_argument("--deploy", metavar="ID", help="only runs pinned to this deploy (its deploy id)")
    parser.add_argument("--json", action="store_true", help="print the runs as one JSON array")
    add_store_arguments(parser)
    parser.set_defaults(run=_runs, prog=parser.prog)


def _runs(args: argparse.Namespace) -> int:
    from cdk_app.terminal.output import console
    from cdk_app.terminal.timeline import print_runs, runs_to_json

    since = None if args.since is None else _since(args.since)
    store = open_store(args)
    runs = open_client(args, store=store).list(
        args.workflow, status=args.status, since=since, limit=args.limit, deploy_id=args.deploy
    )
    if not runs and args.workflow is not None:
        _check_workflow_known(store, args.workflow)
    if args.json:
        print(json.dumps(runs_to_json(runs)))
    else:
        print_runs(console(), runs, datetime.now(UTC), args.limit)
    return EXIT_OK


def _check_workflow_known(store: MongoStore, workflow: str) -> None:
    """Refuse a workflow no spec of the project's folder and no run in the database names: a
    misspelled name would otherwise list "no runs" as if it had none."""
    from runtime.definition.loader import check_specs
    from runtime.documents.run import WORKFLOW

    folder = Path(workflows_dir())
    known = {str(name) for name in store.runs.distinct(WORKFLOW)}
    if folder.is_dir():
        known |= {spec.name for spec in check_specs([folder]).workflows}
    if workflow in known:
        return
    close = difflib.get_close_matches(workflow, sorted(known), n=1)
    hint = f": did you mean {close[0]!r}?" if close else ""
    listed = ", ".join(sorted(known)) or "none"
    raise CommandError(
        f"unknown workflow {workflow!r}{hint} (known: {listed}; from {folder} and the database)", EXIT_USAGE
    )


# --- history ---------------------------------------------------------------------------------------


def add_history(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "history",
        help="every status of a run, in order",
        description="Every status of a run in the order it was recorded (job reports, the engine's "
        "run statuses, operations), as a timeline.",
    )
    parser.add_argument("run_id", metavar="RUN_ID")
    parser.add_argument("--json", action="store_true", help="print the statuses as one JSON array")
    add_store_arguments(parser)
    parser.set_defaults(run=_history, prog=parser.prog)


def _history(args: argparse.Namespace) -> int:
    from cdk_app.terminal.output import console
    from cdk_app.terminal.timeline import history_to_json, print_history

    store = open_store(args)
    entries = open_client(args, store=store).history(args.run_id)
    if args.json:
        print(json.dumps(history_to_json(entries), default=str))
        return EXIT_OK
    # The title needs the run document alone, not the report that reads every status again.
    run = store.read_run(args.run_id)
    title = f"run {args.run_id}" if run is None else f"{run.workflow} run {args.run_id}: {run.state}"
    print_history(console(), title, entries)
    return EXIT_OK
