"""The CLI's ``complete TOKEN --output JSON | --error TEXT [--id ID]`` and ``heartbeat TOKEN
[--id ID]`` (registered in ``cdk_app.cli.main``): complete a callback job's attempt, or keep it
waiting, with the token it handed out, through the same ``Client`` as every other command. Like
``cancel``, they record in whatever database ``--mongo-uri`` names, and whatever delivers its
statuses (the deployed stack, the dev server) applies them; a token that is refused (no token,
forged, or its attempt has ended) is a ``RunError``: exit code 1."""

from __future__ import annotations

import argparse
import json

from cdk_app.cli.arguments import Subparsers, add_store_arguments, json_argument, open_client
from cdk_app.errors import EXIT_OK
from runtime.service.callbacks import CallbackReceipt


def add_complete(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "complete",
        help="complete a callback job's attempt with the token it handed out",
        description=(
            "Complete the callback job's attempt TOKEN was handed out for: with --output it succeeds "
            "with that output, with --error its attempt fails (and its retry rules apply). A token "
            "completes once, and is refused once its attempt has ended."
        ),
    )
    parser.add_argument("token", metavar="TOKEN")
    answer = parser.add_mutually_exclusive_group(required=True)
    answer.add_argument("--output", metavar="JSON", help="the job's output, a JSON value")
    answer.add_argument("--error", metavar="TEXT", help="why the attempt failed")
    _add_common(parser, "the completion's id: completing again with the same id is the same completion")
    parser.set_defaults(run=_complete, prog=parser.prog)


def add_heartbeat(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "heartbeat",
        help="keep a callback job's attempt waiting its timeout again from now",
        description=(
            "Tell the callback job's attempt TOKEN was handed out for to wait its callback timeout "
            "again, counted from now (once its code, if it has any, has returned)."
        ),
    )
    parser.add_argument("token", metavar="TOKEN")
    _add_common(parser, "the heartbeat's id: the same id again is the same heartbeat")
    parser.set_defaults(run=_heartbeat, prog=parser.prog)


def _add_common(parser: argparse.ArgumentParser, id_help: str) -> None:
    parser.add_argument("--id", metavar="ID", help=f"{id_help} (default: a new one)")
    parser.add_argument("--json", action="store_true", help="print the receipt as JSON")
    add_store_arguments(parser)


def _complete(args: argparse.Namespace) -> int:
    client = open_client(args)
    if args.error is not None:
        receipt = client.complete(args.token, error=args.error, completion_id=args.id)
    else:
        receipt = client.complete(args.token, json_argument("--output", args.output), completion_id=args.id)
    what = "failed" if args.error is not None else "completed"
    return _print(args, receipt, f"{what} the callback of")


def _heartbeat(args: argparse.Namespace) -> int:
    receipt = open_client(args).heartbeat(args.token, heartbeat_id=args.id)
    return _print(args, receipt, "heartbeat recorded for")


def _print(args: argparse.Namespace, receipt: CallbackReceipt, what: str) -> int:
    if args.json:
        print(json.dumps(receipt.to_json()))
        return EXIT_OK
    again = "" if receipt.created else " (recorded before with this id)"
    print(
        f"{what} job {receipt.job} of run {receipt.run_id} (attempt {receipt.attempt}) as {receipt.id}{again}"
    )
    return EXIT_OK
