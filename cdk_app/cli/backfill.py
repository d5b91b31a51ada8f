"""The CLI's ``backfill`` command (registered in ``cdk_app.cli.main``): start the runs a
workflow's schedule would have started in a past range, through ``runtime.client.Client``."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdk_app.cli.arguments import Subparsers, add_store_arguments, open_client
from cdk_app.errors import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, CommandError

if TYPE_CHECKING:
    from runtime.client import Backfilled, Client
    from runtime.definition.model import Workflow
    from runtime.engine.schedule import ScheduledStart


def add_backfill(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "backfill",
        help="start the scheduled runs of a past time range (idempotent: none starts twice)",
        description="Start the runs WORKFLOW's schedule fires in the range --from to --to (both "
        "included; cron in the spec's schedule_timezone, a rate counted from --from), each with its "
        "scheduled_time in its input and the run id the schedule gives it, so a repeated backfill, "
        "or one that overlaps the schedule, starts nothing twice. The workflow's schedule_overlap "
        "applies: with skip, a run that finds the one before it still running ends at once; --wait "
        "starts each run only once the one before it has ended.",
    )
    parser.add_argument(
        "workflow", metavar="WORKFLOW", help="a spec file, or a workflow's name in ./workflows"
    )
    parser.add_argument(
        "--from",
        dest="start",
        required=True,
        metavar="TIME",
        help="ISO 8601, e.g. 2026-12-01T00:00Z (UTC if no offset)",
    )
    parser.add_argument("--to", dest="end", required=True, metavar="TIME", help="ISO 8601, included")
    parser.add_argument("--dry-run", action="store_true", help="list the runs it would start; start none")
    parser.add_argument("--wait", action="store_true", help="start each run once the one before it has ended")
    parser.add_argument("--json", action="store_true", help="print the runs as one JSON list on stdout")
    add_store_arguments(parser)
    parser.set_defaults(run=_backfill, prog=parser.prog)


def _time(text: str, flag: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(
            f"{flag} is an ISO 8601 time (e.g. 2026-12-01T00:00Z), got {text!r}", EXIT_USAGE
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _workflow(given: str) -> Workflow:
    from runtime.definition.loader import load_workflow, workflow_in_folder
    from runtime.errors import RunError, SpecError

    try:
        if Path(given).is_file():
            return load_workflow(given)
        return workflow_in_folder(Path("workflows"), given)
    except SpecError as error:
        raise CommandError("\n".join(map(str, error.problems))) from None
    except RunError as error:
        raise CommandError(str(error), EXIT_USAGE) from None


def _backfill(args: argparse.Namespace) -> int:
    from runtime.errors import RunError

    start, end = _time(args.start, "--from"), _time(args.end, "--to")
    if args.dry_run and args.wait:
        raise CommandError("--dry-run starts nothing, so there is nothing to --wait for", EXIT_USAGE)
    workflow = _workflow(args.workflow)
    client = open_client(args)
    try:
        planned = client.scheduled_starts(workflow, start, end)
    except RunError as error:
        raise CommandError(str(error), EXIT_USAGE) from None
    if args.dry_run:
        _show([_row(start_of) for start_of in planned], args.json)
        return EXIT_OK
    rows = [
        _started(client, done, index, len(planned), args)
        for index, done in enumerate(client.backfill(workflow, start, end), 1)
    ]
    if args.json:
        print(json.dumps(rows))
    return EXIT_OK if all(row["status"] != "failed" for row in rows) else EXIT_PROBLEMS


def _row(planned: ScheduledStart, **more: Any) -> dict[str, Any]:
    return {"scheduled_time": planned.scheduled_time, "run_id": planned.run_id, **more}


def _started(
    client: Client, done: Backfilled, index: int, total: int, args: argparse.Namespace
) -> dict[str, Any]:
    """One run's line of progress (on stderr with --json); waits for its end with --wait."""
    run_id = done.started.run_id
    report = client.wait(run_id) if args.wait else client.get(run_id)
    verb = "started" if done.started.created else "existed already"
    why = f": {report.error.strip().splitlines()[0]}" if report.error and report.status == "cancelled" else ""
    print(
        f"[{index}/{total}] {run_id} {verb}, {report.status}{why}",
        file=sys.stderr if args.json else sys.stdout,
    )
    return _row(done.scheduled, created=done.started.created, status=str(report.status))


def _show(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows))
        return
    for row in rows:
        print(f"{row['scheduled_time']}  {row['run_id']}")
    print(f"{len(rows)} run(s) would start (dry run: none started)", file=sys.stderr)
