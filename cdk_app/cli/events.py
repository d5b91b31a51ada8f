"""The CLI's ``send-event WORKFLOW NAME [--payload JSON] [--run RUN_ID] [--id ID]`` (registered in
``cdk_app.cli.main``): sends an event to the event jobs of a workflow's runs, or of one run,
through the same ``Client`` as every other command. Like ``cancel``, it records in whatever
database ``--mongo-uri`` names, and whatever delivers its statuses (the deployed stack, the dev
server) applies them; an event that cannot be sent is a ``RunError``."""

from __future__ import annotations

import argparse
import json

from cdk_app.cli.arguments import Subparsers, add_store_arguments, json_argument, open_client
from cdk_app.errors import EXIT_OK


def add_send_event(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "send-event",
        help="send an event to the event jobs of a workflow's runs",
        description=(
            "Send the event NAME to the runs of WORKFLOW (or to one run, with --run): each event job "
            "waiting for it whose match the payload meets succeeds with the payload as its output; "
            "one that starts waiting later takes it within its retention."
        ),
    )
    parser.add_argument("workflow", metavar="WORKFLOW")
    parser.add_argument("name", metavar="NAME")
    parser.add_argument("--payload", metavar="JSON", help="the event's payload, a JSON value (default: null)")
    parser.add_argument("--run", dest="run_id", metavar="RUN_ID", help="send it to this run only")
    parser.add_argument(
        "--id",
        metavar="ID",
        help="the event's id: sending the same id again is one event (default: a new one)",
    )
    parser.add_argument("--json", action="store_true", help="print the receipt as JSON")
    add_store_arguments(parser)
    parser.set_defaults(run=_send_event, prog=parser.prog)


def _send_event(args: argparse.Namespace) -> int:
    payload = json_argument("--payload", args.payload)
    receipt = open_client(args).send_event(
        args.workflow, args.name, payload, run_id=args.run_id, event_id=args.id
    )
    if args.json:
        print(json.dumps(receipt.to_json()))
        return EXIT_OK
    again = "" if receipt.created else " (sent before with this id: the payload kept then counts)"
    print(f"event {args.name} sent to {args.run_id or args.workflow} as {receipt.event_id}{again}")
    for one in receipt.delivered:
        print(f"  delivered to job {one.job} of run {one.run_id} (attempt {one.attempt})")
    if not receipt.delivered:
        print("  no job waits for it now: it is kept for jobs that start waiting within their retention")
    return EXIT_OK
